//! x86-64 kernels: the portable loops compiled for AVX2/FMA/F16C, the Q4_K
//! int8 kernel on AVX-512 VNNI ([`q4k_int8`]) and AMX tiles ([`amx`]).
//! [`super::tier`] decides which of them run.

pub mod amx;
pub mod q4k_int8;

use std::arch::x86_64::*;

use candle_core::quantized::GgmlDType;

/// [`super::dot`] on AVX2 + FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    super::portable::dot(a, b)
}

/// [`super::dot4`] on AVX2 + FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    super::portable::dot4(x, w)
}

/// [`super::dequant::dequantize_row`] on AVX2 + FMA + F16C.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_row(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> bool {
    super::dequant::dequantize_row(dtype, bytes, out)
}

/// [`super::widen_f16_rows`] for `head_dim` a multiple of 8, on F16C.
///
/// # Safety
/// The CPU must have AVX and F16C.
#[target_feature(enable = "avx,f16c")]
pub unsafe fn widen_f16_rows(
    src: &[half::f16],
    head: usize,
    heads: usize,
    head_dim: usize,
    dst: &mut [f32],
) {
    for (t, row) in dst.chunks_exact_mut(head_dim).enumerate() {
        let start = (t * heads + head) * head_dim;
        let vector = &src[start..start + head_dim];
        for (out, eight) in row.chunks_exact_mut(8).zip(vector.chunks_exact(8)) {
            // SAFETY: both chunks hold exactly 8 elements (16 and 32 bytes).
            unsafe {
                let h = _mm_loadu_si128(eight.as_ptr() as *const __m128i);
                _mm256_storeu_ps(out.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
        }
    }
}

/// [`super::prefetch`]: one `prefetcht0` per cache line.
pub fn prefetch<T>(blocks: &[T]) {
    let start = blocks.as_ptr() as *const i8;
    for offset in (0..std::mem::size_of_val(blocks)).step_by(64) {
        // SAFETY: a prefetch is a hint; it never faults, and the address is
        // inside `blocks`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
    }
}
