//! Kernels every build has: the fallbacks for CPUs (and block types)
//! without a kernel of their own, written so the compiler vectorizes them
//! for the target's baseline.

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use crate::error::Result;

/// Weight rows per parallel task of the few-rows product.
const WEIGHT_ROWS_PER_TASK: usize = 256;
/// How far ahead (in weight rows) the few-rows product prefetches (8 measured
/// a little faster than 2 and 4 for the Q6_K LM head in decode on x86-64).
const PREFETCH_ROWS_AHEAD: usize = 8;

/// [`super::narrow_matvec`]: a dot product per row.
pub fn narrow_matvec(x: &[f32], w: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len().max(1))) {
        *o = dot(x, row);
    }
}

/// Sixteen independent accumulators: the compiler maps them onto SIMD lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (a_body, b_body) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_body
        .remainder()
        .iter()
        .zip(b_body.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a_body.zip(b_body) {
        for l in 0..LANES {
            acc[l] = ca[l].mul_add(cb[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`super::dot4`]: eight lanes per row.
#[inline(always)]
pub fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    const LANES: usize = 8;
    let n = x.len();
    let w = w.map(|row| &row[..n]);
    let body = n - n % LANES;
    let mut acc = [[0f32; LANES]; 4];
    for i in (0..body).step_by(LANES) {
        let xs = &x[i..i + LANES];
        for (acc, row) in acc.iter_mut().zip(w) {
            let ws = &row[i..i + LANES];
            for l in 0..LANES {
                acc[l] = xs[l].mul_add(ws[l], acc[l]);
            }
        }
    }
    std::array::from_fn(|r| {
        let tail: f32 = (body..n).map(|i| x[i] * w[r][i]).sum();
        acc[r].iter().sum::<f32>() + tail
    })
}

/// [`super::widen_f16_rows`] through `half`'s slice conversion.
pub fn widen_f16_rows(
    src: &[half::f16],
    head: usize,
    heads: usize,
    head_dim: usize,
    dst: &mut [f32],
) {
    use half::slice::HalfFloatSliceExt;
    for (t, row) in dst.chunks_exact_mut(head_dim).enumerate() {
        let start = (t * heads + head) * head_dim;
        src[start..start + head_dim].convert_to_f32_slice(row);
    }
}

/// Calls `$f::<T>($args)` with `T` candle's block type of `$dtype`.
macro_rules! with_block_type {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            GgmlDType::F32 => $f::<f32>($($arg),*),
            GgmlDType::F16 => $f::<half::f16>($($arg),*),
            GgmlDType::BF16 => $f::<half::bf16>($($arg),*),
            GgmlDType::Q4_0 => $f::<k_quants::BlockQ4_0>($($arg),*),
            GgmlDType::Q4_1 => $f::<k_quants::BlockQ4_1>($($arg),*),
            GgmlDType::Q5_0 => $f::<k_quants::BlockQ5_0>($($arg),*),
            GgmlDType::Q5_1 => $f::<k_quants::BlockQ5_1>($($arg),*),
            GgmlDType::Q8_0 => $f::<k_quants::BlockQ8_0>($($arg),*),
            GgmlDType::Q2K => $f::<k_quants::BlockQ2K>($($arg),*),
            GgmlDType::Q3K => $f::<k_quants::BlockQ3K>($($arg),*),
            GgmlDType::Q4K => $f::<k_quants::BlockQ4K>($($arg),*),
            GgmlDType::Q5K => $f::<k_quants::BlockQ5K>($($arg),*),
            GgmlDType::Q6K => $f::<k_quants::BlockQ6K>($($arg),*),
            // Activation-only types; the reader never yields them.
            GgmlDType::Q8_1 | GgmlDType::Q8K => Err(candle_core::Error::Msg(format!(
                "{:?} is not a weight type",
                $dtype
            ))
            .into()),
        }
    };
}

/// Views bytes as blocks, after checking length and alignment.
fn blocks<T: GgmlType>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if size == 0
        || !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: length and alignment are checked above; the block types are
    // plain `repr(C)` structs of integers and f16 for which every bit
    // pattern is a valid value; the slice borrows `bytes`.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

fn misaligned() -> crate::error::Error {
    candle_core::Error::Msg("misaligned".into()).into()
}

fn layout_of<T: GgmlType>(bytes: &[u8]) -> Result<()> {
    match blocks::<T>(bytes) {
        Some(_) if std::mem::size_of::<T>() == T::DTYPE.type_size() => Ok(()),
        _ => Err(misaligned()),
    }
}

/// Whether `bytes` can be viewed as blocks of `dtype` (length and alignment).
pub fn check_layout(dtype: GgmlDType, bytes: &[u8]) -> Result<()> {
    with_block_type!(dtype, layout_of(bytes))
}

fn to_f32<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let src = blocks::<T>(bytes).ok_or_else(misaligned)?;
    if src.len() * T::BLCK_SIZE != out.len() {
        return Err(candle_core::Error::Msg("block count mismatch".into()).into());
    }
    T::to_float(src, out);
    Ok(())
}

/// Whole blocks of any weight type dequantized through candle.
pub fn dequantize(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    with_block_type!(dtype, to_f32(bytes, out))
}

/// `lhs @ rhs^T` with candle's k-quants dot products: the activations are
/// quantized to the weights' 8-bit dot-product type, which makes a handful
/// of rows several times faster than dequantizing the weights to f32.
/// Weight rows are read in order with the rows ahead prefetched: decode is
/// bound by how fast the mapped weights stream in from memory.
fn vec_dot_matmul<T: GgmlType>(
    bytes: &[u8],
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    let mismatch = || candle_core::Error::Msg("block count mismatch".into());
    let rhs = blocks::<T>(bytes).ok_or_else(misaligned)?;
    if T::BLCK_SIZE != T::VecDotType::BLCK_SIZE
        || !k.is_multiple_of(T::BLCK_SIZE)
        || rhs.len() * T::BLCK_SIZE != n * k
        || lhs.len() != m * k
        || dst.len() != m * n
    {
        return Err(mismatch().into());
    }
    let row_blocks = k / T::BLCK_SIZE;
    let mut lhs_q = vec![T::VecDotType::zeros(); m * row_blocks];
    for (src, dst) in lhs.chunks_exact(k).zip(lhs_q.chunks_exact_mut(row_blocks)) {
        T::VecDotType::from_float(src, dst);
    }
    // Weight-row-major results (`[n, m]`), transposed at the end.
    let mut by_weight_row = vec![0f32; n * m];
    by_weight_row
        .par_chunks_mut(WEIGHT_ROWS_PER_TASK * m)
        .zip(rhs.par_chunks(WEIGHT_ROWS_PER_TASK * row_blocks))
        .for_each(|(out, weights)| {
            let rows: Vec<&[T]> = weights.chunks_exact(row_blocks).collect();
            for (j, row) in rows.iter().enumerate() {
                if let Some(ahead) = rows.get(j + PREFETCH_ROWS_AHEAD) {
                    super::prefetch(ahead);
                }
                for (o, x) in out[j * m..(j + 1) * m]
                    .iter_mut()
                    .zip(lhs_q.chunks_exact(row_blocks))
                {
                    *o = T::vec_dot(k, row, x);
                }
            }
        });
    for (j, values) in by_weight_row.chunks_exact(m).enumerate() {
        for (r, v) in values.iter().enumerate() {
            dst[r * n + j] = *v;
        }
    }
    Ok(())
}

/// `x` (`m` rows of `k`) times the transpose of the `n` quantized weight
/// rows in `bytes`, into `dst` (`[m, n]`), with candle's dot products.
pub fn quantized_matmul_t(
    dtype: GgmlDType,
    bytes: &[u8],
    (m, k, n): (usize, usize, usize),
    x: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    with_block_type!(dtype, vec_dot_matmul(bytes, (m, k, n), x, dst))
}
