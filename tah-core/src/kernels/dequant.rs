//! Fast dequantization of GGUF rows to f32, straight from the mapped bytes.
//!
//! Used for embedding lookups and for many-row products (prefill), which
//! dequantize a panel of weight rows into a cache-resident scratch and run
//! an f32 GEMM. The block layouts are ggml's:
//! - Q8_0 (34 bytes / 32 weights): `d: f16`, `qs: [i8; 32]`; w = d * q.
//! - Q4_0 (18 bytes / 32): `d: f16`, `qs: [u8; 16]` (weight i in the low
//!   nibble of byte i, weight 16 + i in its high nibble); w = d * (q - 8).
//! - Q4_K (144 bytes / 256): `d: f16`, `dmin: f16`, `scales: [u8; 12]`
//!   (eight 6-bit scale/min pairs), `qs: [u8; 128]` (nibbles);
//!   w = d * sc * q - dmin * m per 32-weight group.
//! - Q6_K (210 bytes / 256): `ql: [u8; 128]`, `qh: [u8; 64]`,
//!   `scales: [i8; 16]`, `d: f16`; w = d * sc * (q - 32) per 16 weights.
//!
//! The loops have constant trip counts over fixed-size arrays so that the
//! compiler vectorizes them for the target's baseline (SSE2, NEON); x86-64
//! compiles them a second time with AVX2/FMA/F16C ([`super::x86_64`]).

use candle_core::quantized::GgmlDType;
use half::{bf16, f16};

pub(crate) const QK_K: usize = 256;
pub(crate) const Q4K_BYTES: usize = 144;
pub(crate) const Q6K_BYTES: usize = 210;
pub(crate) const Q8_0_BYTES: usize = 34;
pub(crate) const Q4_0_BYTES: usize = 18;

/// Dequantizes whole blocks of `dtype` in `bytes` into `out`. Returns false
/// (writing nothing) when `dtype` has no fast path or the sizes disagree.
#[inline(always)]
pub fn dequantize_row(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> bool {
    let (block_bytes, block_len) = match dtype {
        GgmlDType::F32 => (4, 1),
        GgmlDType::F16 | GgmlDType::BF16 => (2, 1),
        GgmlDType::Q8_0 => (Q8_0_BYTES, 32),
        GgmlDType::Q4_0 => (Q4_0_BYTES, 32),
        GgmlDType::Q4K => (Q4K_BYTES, QK_K),
        GgmlDType::Q6K => (Q6K_BYTES, QK_K),
        _ => return false,
    };
    if !bytes.len().is_multiple_of(block_bytes)
        || bytes.len() / block_bytes * block_len != out.len()
    {
        return false;
    }
    match dtype {
        GgmlDType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlDType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlDType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlDType::Q8_0 => {
            for (block, o) in bytes.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(32)) {
                q8_0_block(block, o);
            }
        }
        GgmlDType::Q4_0 => {
            for (block, o) in bytes.chunks_exact(Q4_0_BYTES).zip(out.chunks_exact_mut(32)) {
                q4_0_block(block, o);
            }
        }
        GgmlDType::Q4K => {
            for (block, o) in bytes
                .chunks_exact(Q4K_BYTES)
                .zip(out.chunks_exact_mut(QK_K))
            {
                q4k_block(block, o);
            }
        }
        GgmlDType::Q6K => {
            for (block, o) in bytes
                .chunks_exact(Q6K_BYTES)
                .zip(out.chunks_exact_mut(QK_K))
            {
                q6k_block(block, o);
            }
        }
        _ => unreachable!("filtered above"),
    }
    true
}

pub(crate) fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

#[inline(always)]
fn q8_0_block(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let qs: &[u8; 32] = block[2..34].try_into().expect("34-byte block");
    let out: &mut [f32; 32] = out.try_into().expect("32 outputs");
    for i in 0..32 {
        out[i] = d * qs[i] as i8 as f32;
    }
}

#[inline(always)]
fn q4_0_block(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let qs: &[u8; 16] = block[2..18].try_into().expect("18-byte block");
    let out: &mut [f32; 32] = out.try_into().expect("32 outputs");
    for i in 0..16 {
        out[i] = d * ((qs[i] & 0xF) as i32 - 8) as f32;
        out[i + 16] = d * ((qs[i] >> 4) as i32 - 8) as f32;
    }
}

/// The eight 6-bit (scale, min) pairs packed in a Q4_K block's 12 bytes,
/// as (scales, mins) bytes: groups 0..4 are the low 6 bits of bytes 0..4
/// (scales) and 4..8 (mins); groups 4..8 take the nibbles of bytes 8..12
/// as their low 4 bits and the top 2 bits of bytes 0..8 as their high 2.
/// Done on whole 32-bit words, four groups at a time.
#[inline(always)]
pub(crate) fn q4k_scales_mins(s: &[u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let scales_high = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let mins_high = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    (
        u64::from(w0 & LOW6) | u64::from(scales_high) << 32,
        u64::from(w1 & LOW6) | u64::from(mins_high) << 32,
    )
}

#[inline(always)]
fn q4k_block(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let dmin = half_at(block, 2);
    let scales: &[u8; 12] = block[4..16].try_into().expect("144-byte block");
    let (sc, mins) = q4k_scales_mins(scales);
    let (sc, mins) = (sc.to_le_bytes(), mins.to_le_bytes());
    let qs = &block[16..144];
    // Four groups of 64 weights: 32 low nibbles, then 32 high nibbles.
    for g in 0..4 {
        let q: &[u8; 32] = qs[32 * g..32 * g + 32].try_into().expect("32 bytes");
        let out: &mut [f32; 64] = (&mut out[64 * g..64 * g + 64])
            .try_into()
            .expect("64 outputs");
        let (d1, m1) = (d * sc[2 * g] as f32, dmin * mins[2 * g] as f32);
        let (d2, m2) = (d * sc[2 * g + 1] as f32, dmin * mins[2 * g + 1] as f32);
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0xF) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

#[inline(always)]
fn q6k_block(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 208);
    // Two halves of 128 weights, each from 64 `ql`, 32 `qh` and 8 scales.
    for h in 0..2 {
        let ql: &[u8; 64] = block[64 * h..64 * h + 64].try_into().expect("ql");
        let qh: &[u8; 32] = block[128 + 32 * h..160 + 32 * h].try_into().expect("qh");
        let sc = &block[192 + 8 * h..200 + 8 * h];
        let out: &mut [f32; 128] = (&mut out[128 * h..128 * h + 128])
            .try_into()
            .expect("128 outputs");
        // Weights l, l+32, l+64, l+96; the scale changes every 16 weights.
        for half16 in 0..2 {
            let s = |i: usize| d * (sc[half16 + 2 * i] as i8) as f32;
            let (s0, s1, s2, s3) = (s(0), s(1), s(2), s(3));
            for l in 16 * half16..16 * half16 + 16 {
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                out[l] = s0 * q1 as f32;
                out[l + 32] = s1 * q2 as f32;
                out[l + 64] = s2 * q3 as f32;
                out[l + 96] = s3 * q4 as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Every fast path agrees with candle's reference dequantization.
    #[test]
    fn fast_paths_match_candle() {
        let values: Vec<f32> = (0..4 * QK_K)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
            .collect();
        let x = Tensor::from_vec(values, (4, QK_K), &Device::Cpu).unwrap();
        for dtype in [
            GgmlDType::F32,
            GgmlDType::F16,
            GgmlDType::BF16,
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&x, dtype).unwrap();
            let reference = q.dequantize(&Device::Cpu).unwrap();
            let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bytes = q.data().unwrap();
            let mut fast = vec![0f32; 4 * QK_K];
            assert!(
                super::super::dequantize_row(dtype, &bytes, &mut fast),
                "{dtype:?}"
            );
            let mut portable = vec![0f32; 4 * QK_K];
            assert!(dequantize_row(dtype, &bytes, &mut portable));
            for (i, ((a, b), c)) in fast.iter().zip(&reference).zip(&portable).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{dtype:?} [{i}]: {a} vs {b}"
                );
                assert_eq!(a.to_bits(), c.to_bits(), "{dtype:?} [{i}]");
            }
        }
    }

    #[test]
    fn size_mismatch_is_refused() {
        let mut out = vec![0f32; 32];
        assert!(!super::super::dequantize_row(
            GgmlDType::Q8_0,
            &[0u8; 33],
            &mut out
        ));
        assert!(!super::super::dequantize_row(
            GgmlDType::Q4_0,
            &[0u8; 17],
            &mut out
        ));
        assert!(!super::super::dequantize_row(
            GgmlDType::Q5_0,
            &[0u8; 22],
            &mut out
        ));
    }
}
