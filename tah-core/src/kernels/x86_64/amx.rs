//! `x @ W^T` for many rows on Intel AMX (BF16 tiles), for quantized weights.
//!
//! A prefill chunk multiplies hundreds of activation rows by every weight
//! matrix; AMX's tile multiply does 16 x 16 x 32 multiply-adds per
//! instruction. Per parallel task, a panel of 32 weight rows is dequantized
//! (through the loader's own row dequantization) and stored as bf16 pairs
//! in AMX's "VNNI" layout; the activations are rounded to bf16 once
//! ([`Bf16Rows`]), also when the LM head runs as many panel products. Products accumulate in f32 tiles over the whole row and are
//! stored straight into the output.
//!
//! bf16 keeps 8 significant bits: its rounding of a dequantized 4- or 6-bit
//! weight is ~30x smaller than the quantization step, and of an activation
//! smaller than the per-256 int8 quantization of the few-row kernels.
//! Only quantized weights use it (f32/f16 files keep exact f32 products).
//!
//! Linux on x86-64 only: the kernel must grant the process AMX tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once.

use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::dense::OutColumns;
use crate::kernels::{tier, Tier};

/// Rows of a tile; also the activation and weight rows per tile.
const TILE: usize = 16;
/// bf16 values of K per tile multiply (64 bytes per tile row).
const K_STEP: usize = 32;
/// Weight rows per parallel task: two B tiles side by side.
const PANEL_ROWS: usize = 2 * TILE;
/// Activation rows per step: two A tiles.
const ROW_STEP: usize = 2 * TILE;

/// Whether this CPU and OS run AMX products (checked once): only on the
/// AVX-512 VNNI tier (every AMX CPU has it; a lower `TAH_KERNELS` tier turns
/// AMX off too), and `TAH_AMX=0` turns it off alone (for comparisons).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        tier() >= Tier::Avx512Vnni
            && std::env::var("TAH_AMX").as_deref() != Ok("0")
            && imp::enable()
    })
}

/// Activation rows rounded to bf16 once, for any number of products
/// ([`matmul_t`]; the LM head of a prefill chunk takes hundreds, one per
/// panel of its rows). Zero rows pad them to whole steps.
pub struct Bf16Rows {
    values: Vec<u16>,
    rows: usize,
    cols: usize,
}

impl Bf16Rows {
    /// `x` as `rows` rows of `cols`; None when AMX is not available or
    /// `cols` is not a multiple of 32.
    pub fn new(x: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !available() || cols == 0 || !cols.is_multiple_of(K_STEP) || x.len() != rows * cols {
            return None;
        }
        let mut values = vec![0u16; rows.div_ceil(ROW_STEP) * ROW_STEP * cols];
        // SAFETY: `available()` implies AVX-512.
        unsafe { imp::with_avx512(|| to_bf16(x, &mut values[..rows * cols])) };
        Some(Bf16Rows { values, rows, cols })
    }

    fn padded_rows(&self) -> usize {
        self.values.len() / self.cols
    }
}

/// `a` times the transpose of an `n`-row weight matrix whose row `j`
/// `weight_row(j, out)` writes as f32, into `out` (`[a.rows, n]`).
pub fn matmul_t(
    a: &Bf16Rows,
    n: usize,
    weight_row: &(dyn Fn(usize, &mut [f32]) -> Result<()> + Sync),
    out: &mut [f32],
) -> Result<()> {
    let (m, k) = (a.rows, a.cols);
    if out.len() != m * n {
        return Err(crate::error::Error::InvalidArgument(format!(
            "AMX product: output of {} values for {m} x {n}",
            out.len()
        )));
    }
    let out_ptr = OutColumns::new(out);
    // Panels of weight rows in parallel, each written into its columns.
    (0..n.div_ceil(PANEL_ROWS))
        .into_par_iter()
        .try_for_each_init(
            || PanelBuffers::new(k),
            |buffers, panel| -> Result<()> {
                let first = panel * PANEL_ROWS;
                let rows = PANEL_ROWS.min(n - first);
                buffers.fill(first, rows, weight_row)?;
                // SAFETY: AMX is available (`Bf16Rows` exists); `a` holds
                // whole steps of rows of `k` (a multiple of 32), the panel
                // two whole B tiles per K step (`fill`); the task writes only
                // columns `first..first + rows` of rows `0..m` of `out`,
                // which holds `m * n` values.
                unsafe {
                    imp::panel_product(
                        &a.values,
                        a.padded_rows(),
                        m,
                        k,
                        &buffers.panel,
                        rows,
                        out_ptr,
                        first,
                        n,
                    )
                };
                Ok(())
            },
        )
}

/// f32 -> bf16 bits, rounded to nearest even; NaN stays NaN. Written with
/// integer operations so loops over it vectorize.
#[inline(always)]
fn bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    if bits & 0x7FFF_FFFF > 0x7F80_0000 {
        return 0x7FC0;
    }
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// Rounds f32 to bf16.
fn to_bf16(src: &[f32], dst: &mut [u16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16_bits(*s);
    }
}

/// One task's weight panel and the scratch it is built in (reused across
/// the panels a task takes).
struct PanelBuffers {
    k: usize,
    /// 16 dequantized weight rows.
    rows: Vec<f32>,
    /// The same rows as bf16 pairs (u32s), `k / 2` per row.
    pairs: Vec<u32>,
    /// Two B tiles per K step: tile `h` (weight rows `16h..16h + 16`) and
    /// step `c` are the 16 rows of 16 u32s at `(h * k / 2 + c * 16) * 16`;
    /// row `p` holds pair `p` of the step for each of the 16 weight rows.
    panel: Vec<u32>,
}

impl PanelBuffers {
    fn new(k: usize) -> Self {
        PanelBuffers {
            k,
            rows: vec![0f32; TILE * k],
            pairs: vec![0u32; TILE * k / 2],
            panel: vec![0u32; PANEL_ROWS * k / 2],
        }
    }

    /// Weight rows `first..first + rows` (zero rows up to [`PANEL_ROWS`]).
    fn fill(
        &mut self,
        first: usize,
        rows: usize,
        weight_row: &(dyn Fn(usize, &mut [f32]) -> Result<()> + Sync),
    ) -> Result<()> {
        let (k, half) = (self.k, self.k / 2 * TILE);
        for h in 0..PANEL_ROWS / TILE {
            for (within, row) in self.rows.chunks_exact_mut(k).enumerate() {
                let j = h * TILE + within;
                if j < rows {
                    weight_row(first + j, row)?;
                } else {
                    row.fill(0.0);
                }
            }
            let (rows, pairs) = (&self.rows, &mut self.pairs);
            // SAFETY (both): only reached on the AMX path (AVX-512 present).
            unsafe {
                imp::with_avx512(|| {
                    for (pair, v) in pairs.iter_mut().zip(rows.chunks_exact(2)) {
                        *pair = bf16_bits(v[0]) as u32 | (bf16_bits(v[1]) as u32) << 16;
                    }
                });
                imp::transpose_steps(&self.pairs, k / 2, &mut self.panel[h * half..][..half])
            };
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::arch::asm;

    use super::{OutColumns, K_STEP, ROW_STEP, TILE};

    /// AMX-TILE and AMX-BF16 in CPUID (and AVX-512, which every AMX CPU has
    /// and [`with_avx512`] relies on), and the kernel's grant of tile state.
    pub(super) fn enable() -> bool {
        // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        if edx & (1 << 22) == 0
            || edx & (1 << 24) == 0
            || !std::arch::is_x86_feature_detected!("avx512bw")
        {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain syscall with integer arguments.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        granted == 0
    }

    /// Runs `f` compiled for AVX-512 (every AMX CPU has it), so the bf16
    /// rounding loops vectorize 16 wide.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and BW.
    #[inline(always)]
    pub(super) unsafe fn with_avx512(f: impl FnOnce()) {
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn run(f: impl FnOnce()) {
            f()
        }
        run(f)
    }

    /// Every 16 x 16 block of `pairs` (16 rows of `row_len` u32s, blocks at
    /// columns `16c`) transposed into `dst` at `256c`: row `p` of block `c`
    /// holds column `p` of the source block (the VNNI layout of a B tile).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `pairs` must hold 16 rows of `row_len`
    /// (a multiple of 16) and `dst` `16 * row_len` u32s.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_steps(pairs: &[u32], row_len: usize, dst: &mut [u32]) {
        use std::arch::x86_64::*;
        debug_assert!(pairs.len() >= TILE * row_len && dst.len() >= TILE * row_len);
        for c in 0..row_len / TILE {
            let r: [__m512i; 16] = std::array::from_fn(|i| {
                _mm512_loadu_si512(pairs.as_ptr().add(i * row_len + c * TILE) as *const _)
            });
            // Pairs of rows interleaved (per 128-bit lane), then quads: u[4i
            // + j] holds columns j, j + 4, j + 8, j + 12 of rows 4i..4i + 4.
            let mut u = [_mm512_setzero_si512(); 16];
            for i in 0..4 {
                let (a, b, c2, d) = (r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
                let (ab_lo, ab_hi) = (_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
                let (cd_lo, cd_hi) = (_mm512_unpacklo_epi32(c2, d), _mm512_unpackhi_epi32(c2, d));
                u[4 * i] = _mm512_unpacklo_epi64(ab_lo, cd_lo);
                u[4 * i + 1] = _mm512_unpackhi_epi64(ab_lo, cd_lo);
                u[4 * i + 2] = _mm512_unpacklo_epi64(ab_hi, cd_hi);
                u[4 * i + 3] = _mm512_unpackhi_epi64(ab_hi, cd_hi);
            }
            // The 128-bit lanes regrouped: column j + 4l from lane l of
            // u[j], u[4 + j], u[8 + j], u[12 + j].
            let out = dst.as_mut_ptr().add(c * TILE * TILE);
            for j in 0..4 {
                let v0 = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
                let v1 = _mm512_shuffle_i32x4::<0xDD>(u[j], u[4 + j]);
                let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
                let v3 = _mm512_shuffle_i32x4::<0xDD>(u[8 + j], u[12 + j]);
                for (col, v) in [
                    (j, _mm512_shuffle_i32x4::<0x88>(v0, v2)),
                    (j + 4, _mm512_shuffle_i32x4::<0x88>(v1, v3)),
                    (j + 8, _mm512_shuffle_i32x4::<0xDD>(v0, v2)),
                    (j + 12, _mm512_shuffle_i32x4::<0xDD>(v1, v3)),
                ] {
                    _mm512_storeu_si512(out.add(col * TILE) as *mut _, v);
                }
            }
        }
    }

    /// `ldtilecfg`'s 64-byte operand: palette 1; tiles 0-3 the f32 sums
    /// (A tile `i` x B tile `h` in tile `2i + h`), 4-5 activations, 6-7
    /// weights; every tile 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn new() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..8 {
                c[16 + 2 * t] = 64;
                c[48 + t] = TILE as u8;
            }
            TileConfig(c)
        }
    }

    macro_rules! tile_load {
        ($tile:literal, $base:expr, $stride:expr) => {
            asm!(
                concat!("tileloadd tmm", $tile, ", [{b} + {s}]"),
                b = in(reg) $base,
                s = in(reg) $stride,
                options(nostack, readonly),
            )
        };
    }
    macro_rules! tile_store {
        ($tile:literal, $base:expr, $stride:expr) => {
            asm!(
                concat!("tilestored [{b} + {s}], tmm", $tile),
                b = in(reg) $base,
                s = in(reg) $stride,
                options(nostack),
            )
        };
    }

    /// Rows `0..m` of `a` (`padded_m` rows of `k` bf16) times the panel `b`
    /// (`rows` valid weight rows), into columns `first..first + rows` of
    /// `out` (row stride `n`).
    ///
    /// # Safety
    /// AMX must be enabled ([`enable`]); `a` must hold `padded_m * k` values
    /// with `padded_m` a multiple of [`ROW_STEP`] and `b` `PANEL_ROWS * k`;
    /// `out` must hold `m * n` values whose columns `first..first + rows`
    /// no one else accesses.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel_product(
        a: &[u16],
        padded_m: usize,
        m: usize,
        k: usize,
        b: &[u32],
        rows: usize,
        out: OutColumns,
        first: usize,
        n: usize,
    ) {
        let config = TileConfig::new();
        asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let a_stride = k * 2;
        let b_half = k / 2 * TILE;
        let mut scratch = [0f32; TILE * TILE];
        for m0 in (0..padded_m).step_by(ROW_STEP) {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for c in 0..k / K_STEP {
                let a0 = a.as_ptr().add(m0 * k + c * K_STEP);
                let a1 = a0.add(TILE * k);
                let b0 = b.as_ptr().add(c * K_STEP / 2 * TILE);
                let b1 = b0.add(b_half);
                tile_load!("4", a0, a_stride);
                tile_load!("5", a1, a_stride);
                tile_load!("6", b0, 64usize);
                tile_load!("7", b1, 64usize);
                asm!(
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    options(nostack, nomem),
                );
            }
            // Sums of A tile i (rows m0 + 16i..) and B tile h (columns
            // first + 16h..): straight into `out` when whole, else through
            // `scratch`.
            for (tile, i, h) in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)] {
                let row0 = m0 + i * TILE;
                let col0 = h * TILE;
                if row0 >= m || col0 >= rows {
                    continue;
                }
                let valid_rows = TILE.min(m - row0);
                let valid_cols = TILE.min(rows - col0);
                let whole = valid_rows == TILE && valid_cols == TILE;
                let (dst, stride) = if whole {
                    (out.at(row0 * n + first + col0), n * 4)
                } else {
                    (scratch.as_mut_ptr(), TILE * 4)
                };
                match tile {
                    0 => tile_store!("0", dst, stride),
                    1 => tile_store!("1", dst, stride),
                    2 => tile_store!("2", dst, stride),
                    _ => tile_store!("3", dst, stride),
                }
                if !whole {
                    for r in 0..valid_rows {
                        let at = out.at((row0 + r) * n + first + col0);
                        std::ptr::copy_nonoverlapping(
                            scratch.as_ptr().add(r * TILE),
                            at,
                            valid_cols,
                        );
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::OutColumns;

    pub(super) fn enable() -> bool {
        false
    }

    pub(super) unsafe fn with_avx512(f: impl FnOnce()) {
        f()
    }

    pub(super) unsafe fn transpose_steps(_: &[u32], _: usize, _: &mut [u32]) {
        unreachable!("matmul_t checks available()");
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel_product(
        _: &[u16],
        _: usize,
        _: usize,
        _: usize,
        _: &[u32],
        _: usize,
        _: OutColumns,
        _: usize,
        _: usize,
    ) {
        unreachable!("matmul_t checks available()");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    fn bf16(v: f32) -> f32 {
        half::bf16::from_f32(v).to_f32()
    }

    #[test]
    fn matches_the_bf16_rounded_product() {
        if !available() {
            eprintln!("skipped: no AMX on this CPU / OS");
            return;
        }
        // Row counts around the tile and step sizes, weight rows around the
        // panel size.
        let k = 96;
        for (m, n) in [(1, 5), (16, 32), (33, 70), (64, 16), (47, 33)] {
            let x = values(m * k, 7 + m as u32);
            let w = values(n * k, 11 + n as u32);
            let weight_row = |j: usize, out: &mut [f32]| -> Result<()> {
                out.copy_from_slice(&w[j * k..(j + 1) * k]);
                Ok(())
            };
            let mut out = vec![f32::NAN; m * n];
            let a = Bf16Rows::new(&x, m, k).unwrap();
            matmul_t(&a, n, &weight_row, &mut out).unwrap();
            for r in 0..m {
                for c in 0..n {
                    let expect: f64 = (0..k)
                        .map(|i| bf16(x[r * k + i]) as f64 * bf16(w[c * k + i]) as f64)
                        .sum();
                    let got = out[r * n + c] as f64;
                    assert!(
                        (got - expect).abs() <= 1e-5 * (1.0 + expect.abs()),
                        "m {m} n {n} row {r} col {c}: {got} vs {expect}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        // k not a multiple of 32; rows that do not fill the input.
        assert!(Bf16Rows::new(&[0.0; 2 * 40], 2, 40).is_none());
        assert!(Bf16Rows::new(&[0.0; 2 * 32], 3, 32).is_none());
        if let Some(a) = Bf16Rows::new(&[0.0; 2 * 32], 2, 32) {
            // Wrong output size: a typed error, nothing written.
            let row = |_: usize, _: &mut [f32]| -> Result<()> { Ok(()) };
            let mut out = vec![1f32; 4];
            assert!(matmul_t(&a, 3, &row, &mut out).is_err());
            assert_eq!(out, [1.0; 4]);
        }
    }
}
