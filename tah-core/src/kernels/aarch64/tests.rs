//! Every AArch64 kernel on every tier this CPU runs, against a scalar
//! reference: the weights dequantized by the portable row decoder times the
//! kernel's own int8 activations (checked separately against the f32
//! input), summed in f64.

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ4_0, BlockQ6K, BlockQ8_0, GgmlType};
use candle_core::quantized::GgmlDType;

use super::*;
use crate::kernels::{dequant, test_values};

/// Quantized bytes of `w` (`n` rows of `k`) as `T`.
fn quantize<T: GgmlType>(w: &[f32]) -> Vec<u8> {
    let mut blocks = vec![T::zeros(); w.len() / T::BLCK_SIZE];
    T::from_float(w, &mut blocks);
    let size = std::mem::size_of_val(blocks.as_slice());
    // SAFETY: ggml block types are plain old data.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, size) }.to_vec()
}

fn weight_bytes(dtype: GgmlDType, w: &[f32]) -> Vec<u8> {
    match dtype {
        GgmlDType::Q4K => quantize::<BlockQ4K>(w),
        GgmlDType::Q6K => quantize::<BlockQ6K>(w),
        GgmlDType::Q8_0 => quantize::<BlockQ8_0>(w),
        GgmlDType::Q4_0 => quantize::<BlockQ4_0>(w),
        _ => unreachable!(),
    }
}

/// `[m, n]` of the dequantized weights times the activations' int8 values.
fn reference(dtype: GgmlDType, bytes: &[u8], a: &Activations, n: usize) -> Vec<f64> {
    let (m, k) = (a.rows.rows, a.rows.cols);
    let mut w = vec![0f32; n * k];
    let row_bytes = bytes.len() / n;
    for (src, dst) in bytes.chunks_exact(row_bytes).zip(w.chunks_exact_mut(k)) {
        assert!(dequant::dequantize_row(dtype, src, dst), "{dtype:?}");
    }
    let mut out = vec![0f64; m * n];
    for r in 0..m {
        let row = a.rows.row(r);
        for c in 0..n {
            out[r * n + c] = (0..k)
                .map(|i| {
                    let x = row.values[i] as f64 * row.scales[i / a.rows.block] as f64;
                    x * w[c * k + i] as f64
                })
                .sum();
        }
    }
    out
}

/// The largest error of `got` against `want`, relative to the row's scale.
fn worst(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(1.0f64, |s, v| s.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
}

const TYPES: [(GgmlDType, &[usize]); 4] = [
    (GgmlDType::Q4K, &[256, 768]),
    (GgmlDType::Q6K, &[256, 512]),
    (GgmlDType::Q8_0, &[32, 96]),
    (GgmlDType::Q4_0, &[32, 160]),
];

#[test]
fn every_kernel_matches_the_scalar_reference_on_every_tier() {
    for tier in Tier::runnable() {
        for (dtype, ks) in TYPES {
            for &k in ks {
                // Row counts around the tiles (4 rows, pairs, 4 pairs) and
                // weight rows around the tasks (16 and 64) and pairs.
                for (m, n) in [
                    (1, 3),
                    (2, 17),
                    (3, 64),
                    (4, 65),
                    (5, 33),
                    (7, 16),
                    (9, 130),
                    (16, 2),
                ] {
                    let x = test_values(m * k, 3 + m as u32);
                    let w: Vec<f32> = test_values(n * k, 5 + n as u32)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| v * (1.0 + (i % 7) as f32))
                        .collect();
                    let bytes = weight_bytes(dtype, &w);
                    let a = Activations::new(tier, dtype, &x, m, k).expect("a kernel");
                    let mut out = vec![f32::NAN; m * n];
                    a.matmul_t(&bytes, n, &mut out).unwrap();
                    let want = reference(dtype, &bytes, &a, n);
                    let err = worst(&out, &want);
                    assert!(
                        err < 2e-6,
                        "{tier} {dtype:?} k {k} m {m} n {n}: error {err}"
                    );
                }
            }
        }
    }
}

/// The comparison above is tight enough to see one weight changed: the
/// kernel's result is far from the reference of a perturbed operand (a
/// kernel that skipped a block, a nibble half or a scale would fail).
#[test]
fn a_perturbed_operand_is_detected() {
    let tier = crate::kernels::tier();
    for (dtype, ks) in TYPES {
        let (k, m, n) = (ks[1], 5, 9);
        let x = test_values(m * k, 21);
        let bytes = weight_bytes(dtype, &test_values(n * k, 22));
        let a = Activations::new(tier, dtype, &x, m, k).unwrap();
        let mut out = vec![0f32; m * n];
        a.matmul_t(&bytes, n, &mut out).unwrap();
        // The last byte of the last row: a weight's bits (or Q6_K's block
        // scale), far from the blocks' first bytes.
        let mut perturbed = bytes.clone();
        *perturbed.last_mut().unwrap() ^= 0x21;
        let want = reference(dtype, &perturbed, &a, n);
        assert!(
            worst(&out, &want) > 1e-4,
            "{dtype:?}: a changed weight went unnoticed"
        );
        // And one activation value.
        let mut x2 = x.clone();
        x2[k - 1] += 0.3;
        let a2 = Activations::new(tier, dtype, &x2, m, k).unwrap();
        let want = reference(dtype, &bytes, &a2, n);
        assert!(
            worst(&out, &want) > 1e-4,
            "{dtype:?}: a changed input went unnoticed"
        );
    }
}

#[test]
fn activations_are_the_input_to_within_half_a_step() {
    let (m, k) = (3, 512);
    let mut x = test_values(m * k, 9);
    x[7] = f32::NAN;
    for (dtype, _) in TYPES {
        let a = Activations::new(crate::kernels::tier(), dtype, &x, m, k).unwrap();
        for r in 0..m {
            let row = a.rows.row(r);
            for i in 0..k {
                let scale = row.scales[i / a.rows.block];
                let got = row.values[i] as f32 * scale;
                let want = if x[r * k + i].is_nan() {
                    0.0
                } else {
                    x[r * k + i]
                };
                assert!(
                    (got - want).abs() <= scale * 0.5 + 1e-7,
                    "{dtype:?} [{r}][{i}]"
                );
            }
            // Q4_K's 32-value sums are the sums of the int8 values, scaled.
            for (g, s) in row.sums32.iter().enumerate() {
                let sum: i32 = row.values[32 * g..32 * g + 32]
                    .iter()
                    .map(|v| *v as i32)
                    .sum();
                assert_eq!(*s, sum as f32 * row.scales[32 * g / a.rows.block]);
            }
        }
    }
}

#[test]
fn q4k_scales_and_mins_unpack_like_the_portable_decoder() {
    for seed in 0..500u32 {
        let bytes: [u8; 16] =
            std::array::from_fn(|i| ((i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 13) as u8);
        let (scales, mins) = dequant::q4k_scales_mins(bytes[..12].try_into().unwrap());
        // SAFETY: 16 readable bytes; NEON is the baseline.
        let got: [u8; 16] =
            unsafe { std::mem::transmute(rows::q4k_scales_and_mins(bytes.as_ptr())) };
        assert_eq!(got[..8], scales.to_le_bytes(), "seed {seed}");
        assert_eq!(got[8..], mins.to_le_bytes(), "seed {seed}");
    }
}

#[test]
fn what_has_no_kernel_is_left_to_the_portable_path() {
    let x = test_values(2 * 64, 1);
    // Q5_0 has no kernel here; 64 values are not a Q4_K block.
    assert!(Activations::new(Tier::Neon, GgmlDType::Q5_0, &x, 2, 64).is_none());
    assert!(Activations::new(Tier::Neon, GgmlDType::Q4K, &x, 2, 64).is_none());
    // Sizes that disagree are a typed error, nothing written.
    let a = Activations::new(Tier::Neon, GgmlDType::Q8_0, &x, 2, 64).unwrap();
    let mut out = vec![1f32; 6];
    assert!(a.matmul_t(&[0u8; 34], 3, &mut out).is_err());
    assert_eq!(out, [1.0; 6]);
}
