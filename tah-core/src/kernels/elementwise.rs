//! Element-wise and row-wise steps of a pass (softmax, RMSNorm, SiLU), as
//! plain loops over independent lanes that the compiler vectorizes for
//! each target's baseline (NEON on AArch64, SSE2 on x86-64): no libm call
//! per element, no serial running sum.

/// Lanes of the running sums: independent accumulators the compiler maps
/// onto SIMD registers (a single running f32 sum is a serial chain it may
/// not reorder).
const LANES: usize = 16;

/// `xs` replaced by its softmax.
pub fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in xs.iter_mut() {
        *x = exp_non_positive(*x - max);
    }
    let inverse = 1.0 / lane_sum(xs);
    for x in xs.iter_mut() {
        *x *= inverse;
    }
}

/// A sum in [`LANES`] independent lanes.
fn lane_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `e^x` for `x <= 0` (within 3e-7 relative; 0 below -87, so masked scores weigh
/// exactly nothing). Plain arithmetic the compiler vectorizes, unlike a
/// libm call per score, which took ~4% of a prefill.
#[inline(always)]
pub fn exp_non_positive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // x = n ln2 + r with |r| <= ln2 / 2, then e^r by its Taylor series.
    let x = x.max(-87.0);
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer without
    // a libm call (`round` is one on baseline x86-64).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scaled = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x <= -87.0 {
        0.0
    } else {
        scaled
    }
}

/// Each `width`-long row of `x` RMS-normalized and scaled by `weight`
/// (`x * weight / sqrt(mean(x^2) + eps)`, Qwen3's RMSNorm), into `out`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (row, dst) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mut lanes = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for chunk in chunks {
            for (lane, v) in lanes.iter_mut().zip(chunk) {
                *lane = v.mul_add(*v, *lane);
            }
        }
        let mean = (lanes.iter().sum::<f32>() + tail) / width as f32;
        let inverse = 1.0 / (mean + eps).sqrt();
        for ((d, v), w) in dst.iter_mut().zip(row).zip(weight) {
            *d = v * inverse * w;
        }
    }
}

/// `gate` replaced by `silu(gate) * up` (SwiGLU), with
/// `silu(x) = x / (1 + e^-x)` from [`exp_non_positive`] of `-|x|`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        let x = *g;
        let e = exp_non_positive(-x.abs());
        let sigmoid = if x >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        *g = x * sigmoid * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_on_non_positive_inputs() {
        for i in 0..=100_000 {
            let x = -90.0 * i as f32 / 100_000.0;
            let (got, want) = (exp_non_positive(x), x.exp());
            if x <= -87.0 {
                assert_eq!(got, 0.0, "{x}");
            } else {
                assert!((got - want).abs() <= 3e-7 * want, "{x}: {got} vs {want}");
            }
        }
        assert_eq!(exp_non_positive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_non_positive(0.0), 1.0);
    }

    #[test]
    fn rms_norm_matches_the_formula() {
        let width = 70;
        let x = crate::kernels::test_values(3 * width, 5);
        let weight = crate::kernels::test_values(width, 6);
        let mut out = vec![0f32; x.len()];
        rms_norm(&x, &weight, 1e-6, &mut out);
        for (row, got) in x.chunks(width).zip(out.chunks(width)) {
            let mean = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / width as f64;
            for ((v, w), g) in row.iter().zip(&weight).zip(got) {
                let want = *v as f64 * *w as f64 / (mean + 1e-6).sqrt();
                assert!((*g as f64 - want).abs() < 1e-6, "{g} vs {want}");
            }
        }
    }

    #[test]
    fn silu_mul_matches_the_formula() {
        let mut gate: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) * 0.05).collect();
        gate.extend([f32::NEG_INFINITY, 100.0, -100.0, 0.0]);
        let up: Vec<f32> = (0..gate.len())
            .map(|i| 1.0 + (i % 7) as f32 * 0.25)
            .collect();
        // -inf / (1 + inf) is NaN, as in candle's and PyTorch's SiLU.
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| g as f64 / (1.0 + (-g as f64).exp()) * u as f64)
            .collect();
        silu_mul(&mut gate, &up);
        for (g, w) in gate.iter().zip(&want) {
            if w.is_nan() {
                assert!(g.is_nan());
                continue;
            }
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{g} vs {w}"
            );
        }
    }
}
