//! Compute kernels, kept apart from the file format and the model code.
//!
//! One folder per architecture ([`x86_64`], [`aarch64`]) plus the portable
//! code every build has ([`dequant`], [`elementwise`], [`portable`], and the
//! drivers in [`dense`] and [`quantized`]), behind one dispatch point: [`tier`], the
//! CPU's run-time features, detected once. Nothing is assumed at compile
//! time beyond the target's baseline (x86-64, ARMv8.0 NEON), so one library
//! runs on every CPU of its architecture and uses what each one has.
//!
//! The GPU's kernels are in [`gpu`]: WGSL compute shaders and their
//! pipelines on wgpu (Metal on Apple platforms, Vulkan elsewhere) for the
//! GPU model in `crate::gpu`; the shader sources are here in every build
//! (the offline shader check), the rest with the `gpu` feature.
//!
//! `TAH_KERNELS=<tier>` picks a lower tier than the CPU's (for comparisons
//! and tests); a tier the CPU lacks is refused with a warning.

pub mod dense;
pub mod dequant;
pub mod elementwise;
pub mod gpu;
mod portable;
pub mod quantized;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use std::sync::OnceLock;

pub use quantized::QuantMatrix;

/// The set of kernels this process runs, from the CPU's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// No kernels of its own: baseline x86-64, or another architecture.
    Portable,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// x86-64 with AVX2 and AVX-512 BW + VNNI (the Q4_K int8 kernel); AMX,
    /// where the CPU and OS have it, on top ([`x86_64::amx`]).
    Avx512Vnni,
    /// AArch64 baseline (ARMv8.0 NEON): int8 products by widening multiplies.
    Neon,
    /// AArch64 with the dot-product instructions (SDOT, ARMv8.2+).
    Dotprod,
    /// AArch64 with dotprod and the int8 matrix multiply (SMMLA, ARMv8.6+).
    I8mm,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Portable => "portable",
            Tier::Avx2 => "avx2",
            Tier::Avx512Vnni => "avx512vnni",
            Tier::Neon => "neon",
            Tier::Dotprod => "dotprod",
            Tier::I8mm => "i8mm",
        }
    }

    fn from_name(name: &str) -> Option<Tier> {
        [
            Tier::Portable,
            Tier::Avx2,
            Tier::Avx512Vnni,
            Tier::Neon,
            Tier::Dotprod,
            Tier::I8mm,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// Every tier this CPU can run, lowest first (what the kernel tests
    /// compare against each other).
    pub fn runnable() -> Vec<Tier> {
        let best = detected();
        let family: &[Tier] = if cfg!(target_arch = "aarch64") {
            &[Tier::Neon, Tier::Dotprod, Tier::I8mm]
        } else {
            &[Tier::Portable, Tier::Avx2, Tier::Avx512Vnni]
        };
        family.iter().copied().filter(|t| *t <= best).collect()
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best tier the CPU supports.
pub fn detected() -> Tier {
    static DETECTED: OnceLock<Tier> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                    return Tier::Avx512Vnni;
                }
                return Tier::Avx2;
            }
            Tier::Portable
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            if has!("dotprod") {
                if has!("i8mm") {
                    return Tier::I8mm;
                }
                return Tier::Dotprod;
            }
            Tier::Neon
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        Tier::Portable
    })
}

/// The tier this process runs: [`detected`], or the lower one that
/// `TAH_KERNELS` names.
pub fn tier() -> Tier {
    static TIER: OnceLock<Tier> = OnceLock::new();
    *TIER.get_or_init(|| {
        let best = detected();
        let Ok(asked) = std::env::var("TAH_KERNELS") else {
            return best;
        };
        match Tier::from_name(&asked) {
            Some(t) if Tier::runnable().contains(&t) => t,
            _ => {
                log::warn!(
                    "TAH_KERNELS={asked} is not a tier this CPU runs ({}); using {best}",
                    Tier::runnable()
                        .iter()
                        .map(|t| t.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                best
            }
        }
    })
}

/// Dot product of two f32 slices of equal length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if tier() >= Tier::Avx2 {
        // SAFETY: the tier guarantees AVX2 and FMA.
        return unsafe { x86_64::dot(a, b) };
    }
    #[cfg(target_arch = "aarch64")]
    return aarch64::dot(a, b);
    #[allow(unreachable_code)]
    portable::dot(a, b)
}

/// The dot products of `x` with four weight rows as long as it: each value
/// of `x` is loaded once for the four.
pub fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if tier() >= Tier::Avx2 {
        // SAFETY: the tier guarantees AVX2 and FMA.
        return unsafe { x86_64::dot4(x, w) };
    }
    #[cfg(target_arch = "aarch64")]
    return aarch64::dot4(x, w);
    #[allow(unreachable_code)]
    portable::dot4(x, w)
}

/// `out[j] = x · w[j]` for the rows of `w`, a contiguous `[out.len(),
/// x.len()]` matrix with short rows (a LoRA `B`, `[out, r]`): per row the
/// work is a few multiplies, so a kernel that keeps `x` in registers and
/// reduces four rows at once beats a dot product call per row.
pub fn narrow_matvec(x: &[f32], w: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "aarch64")]
    if aarch64::narrow_matvec(x, w, out) {
        return;
    }
    portable::narrow_matvec(x, w, out)
}

/// Whole blocks of `dtype` in `bytes` dequantized into `out`. Returns false
/// (writing nothing) when `dtype` has no fast row decoder here or the sizes
/// disagree.
pub fn dequantize_row(
    dtype: candle_core::quantized::GgmlDType,
    bytes: &[u8],
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if tier() >= Tier::Avx2 {
        // SAFETY: the tier guarantees AVX2, FMA and F16C.
        return unsafe { x86_64::dequantize_row(dtype, bytes, out) };
    }
    dequant::dequantize_row(dtype, bytes, out)
}

/// Vectors `t * heads + head` of `src` (interleaved `[entry][head]`),
/// widened into the `head_dim`-long rows of `dst`. Every decode step widens
/// a head's whole visible f16 cache, so this is one vector loop where the
/// CPU converts f16 in hardware.
pub fn widen_f16_rows(
    src: &[half::f16],
    head: usize,
    heads: usize,
    head_dim: usize,
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if tier() >= Tier::Avx2 && head_dim.is_multiple_of(8) {
        // SAFETY: the tier guarantees AVX and F16C.
        return unsafe { x86_64::widen_f16_rows(src, head, heads, head_dim, dst) };
    }
    #[cfg(target_arch = "aarch64")]
    if head_dim.is_multiple_of(4) {
        return aarch64::widen_f16_rows(src, head, heads, head_dim, dst);
    }
    portable::widen_f16_rows(src, head, heads, head_dim, dst)
}

/// Whether `bytes` can be viewed as whole blocks of `dtype` (length and
/// alignment), as every product and row decoder needs.
pub fn check_block_layout(
    dtype: candle_core::quantized::GgmlDType,
    bytes: &[u8],
) -> crate::error::Result<()> {
    portable::check_layout(dtype, bytes)
}

/// Asks the CPU to start loading `blocks` into the cache (a hint).
pub fn prefetch<T>(blocks: &[T]) {
    #[cfg(target_arch = "x86_64")]
    x86_64::prefetch(blocks);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = blocks;
}

/// Deterministic values in [-0.5, 0.5) for kernel tests (a multiplicative
/// hash of the index and `seed`).
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every width (the NEON kernel's multiples of 4 up to 32, and the
    /// fallback beyond), odd row counts; a perturbed weight is seen.
    #[test]
    fn narrow_matvec_matches_the_reference() {
        for k in [4, 8, 12, 16, 20, 32, 6, 36] {
            for rows in [1, 3, 4, 7, 13] {
                let x = test_values(k, 11);
                let mut w = test_values(rows * k, 5);
                let reference: Vec<f32> = w
                    .chunks_exact(k)
                    .map(|row| {
                        let sum: f64 = row.iter().zip(&x).map(|(a, b)| f64::from(a * b)).sum();
                        sum as f32
                    })
                    .collect();
                let mut out = vec![f32::NAN; rows];
                narrow_matvec(&x, &w, &mut out);
                for (o, r) in out.iter().zip(&reference) {
                    assert!((o - r).abs() < 1e-5, "k {k}, rows {rows}: {o} vs {r}");
                }
                let last = rows * k - 1;
                w[last] += 1.0;
                narrow_matvec(&x, &w, &mut out);
                assert!(
                    (out[rows - 1] - reference[rows - 1] - x[k - 1]).abs() < 1e-5,
                    "k {k}, rows {rows}: the last weight was not read"
                );
            }
        }
    }

    /// The tier the CPU should get, from a source other than the detection
    /// under test: `TAH_EXPECT_TIER` (the qemu runs, whose /proc/cpuinfo is
    /// the host's), else on x86-64 Linux the kernel's CPU flags.
    fn expected_tier() -> Option<String> {
        if let Ok(expect) = std::env::var("TAH_EXPECT_TIER") {
            return Some(expect);
        }
        if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            return None;
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))?
            .split_whitespace()
            .collect();
        let has = |all: &[&str]| all.iter().all(|f| flags.contains(f));
        let tier = if !has(&["avx2", "fma", "f16c"]) {
            Tier::Portable
        } else if has(&["avx512f", "avx512bw", "avx512_vnni"]) {
            Tier::Avx512Vnni
        } else {
            Tier::Avx2
        };
        Some(tier.name().to_string())
    }

    /// The detected tier must be the one the CPU has ([`expected_tier`]):
    /// a detection that silently fell back, or used an instruction the CPU
    /// lacks, fails here.
    #[test]
    fn the_detected_tier_is_the_cpus() {
        let tier = detected();
        eprintln!("detected kernel tier: {tier}; running: {}", super::tier());
        if let Some(expect) = expected_tier() {
            assert_eq!(tier.name(), expect);
        }
        assert!(Tier::runnable().contains(&tier));
        assert!(Tier::runnable().contains(&super::tier()));
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        for len in [0, 1, 3, 4, 15, 16, 17, 64, 1000] {
            let (a, b) = (test_values(len, 1), test_values(len, 2));
            let expect: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b) as f64;
            assert!((got - expect).abs() < 1e-5, "len {len}: {got} vs {expect}");
        }
    }

    /// Head dimensions that take the vector loops and the fallback.
    #[test]
    fn dot4_matches_four_dots() {
        for len in [0, 1, 7, 8, 16, 33, 1000] {
            let x = test_values(len, 3);
            let w: Vec<Vec<f32>> = (0..4).map(|r| test_values(len, 10 + r)).collect();
            let got = dot4(&x, [&w[0], &w[1], &w[2], &w[3]]);
            for (g, row) in got.iter().zip(&w) {
                let expect: f64 = x.iter().zip(row).map(|(a, b)| *a as f64 * *b as f64).sum();
                assert!(
                    (*g as f64 - expect).abs() < 1e-5,
                    "len {len}: {g} vs {expect}"
                );
            }
        }
    }

    #[test]
    fn f16_rows_widen_exactly() {
        for head_dim in [16, 8, 5, 4] {
            f16_rows_widen_exactly_at(head_dim);
        }
    }

    fn f16_rows_widen_exactly_at(head_dim: usize) {
        let (heads, entries) = (3, 5);
        let src: Vec<half::f16> = test_values(heads * head_dim * entries, 4)
            .into_iter()
            .map(|v| half::f16::from_f32(v * 80.0))
            .collect();
        for head in 0..heads {
            let mut dst = vec![0f32; entries * head_dim];
            widen_f16_rows(&src, head, heads, head_dim, &mut dst);
            for t in 0..entries {
                for i in 0..head_dim {
                    let want = src[(t * heads + head) * head_dim + i].to_f32();
                    assert_eq!(dst[t * head_dim + i].to_bits(), want.to_bits());
                }
            }
        }
    }
}
