//! The few instructions the AArch64 kernels are built from, per tier.
//!
//! SDOT (dotprod) and SMMLA (i8mm) are written as inline assembly: Rust's
//! intrinsics for them are unstable. The assembly names its extension so it
//! assembles in any function; the kernels that use it are compiled with the
//! matching `#[target_feature]` and called only on CPUs that report it (see
//! [`super::super::tier`]), so a plain ARMv8.0 core never meets an
//! instruction it lacks.

use std::arch::aarch64::*;
use std::arch::asm;

/// Sixteen int8 products accumulated into four int32 lanes. With SDOT each
/// lane holds four consecutive products; [`Widening`] groups them
/// differently, so callers use only sums over all four lanes.
pub(super) trait Int8Dot: Copy {
    /// `acc` plus the products of `a` and `b`.
    ///
    /// # Safety
    /// The CPU must have the instructions of the implementation.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// SDOT: one instruction per sixteen products (ARMv8.2 dotprod).
#[derive(Clone, Copy)]
pub(super) struct Sdot;

impl Int8Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack),
        );
        acc
    }
}

/// Plain NEON (ARMv8.0): two widening multiplies and two pairwise
/// accumulates per sixteen products.
#[derive(Clone, Copy)]
pub(super) struct Widening;

impl Int8Dot for Widening {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let low = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let high = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, low), high)
    }
}

/// SMMLA: `acc` (a 2 x 2 int32 matrix, row-major) plus `a` (2 rows of 8
/// int8) times the transpose of `b` (2 rows of 8).
///
/// # Safety
/// The CPU must have i8mm.
#[inline(always)]
pub(super) unsafe fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    asm!(
        ".arch_extension i8mm",
        "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack),
    );
    acc
}

/// Four f16 values (little-endian bits) widened to f32 in one `fcvtl`
/// (ARMv8.0: conversion needs no FP16 arithmetic extension).
#[inline(always)]
pub(super) fn f16x4_to_f32(bits: u64) -> float32x4_t {
    // SAFETY: NEON is part of the AArch64 baseline; the asm only converts
    // registers.
    unsafe {
        let halves: uint16x4_t = vcreate_u16(bits);
        let out: float32x4_t;
        asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            out = lateout(vreg) out,
            h = in(vreg) halves,
            options(pure, nomem, nostack),
        );
        out
    }
}

/// Eight f16 values widened to f32 (`fcvtl` and `fcvtl2`).
///
/// # Safety
/// `src` must hold 8 values and `dst` room for 8.
#[inline(always)]
pub(super) unsafe fn widen8(src: *const u16, dst: *mut f32) {
    let halves = vld1q_u16(src);
    let (low, high): (float32x4_t, float32x4_t);
    asm!(
        "fcvtl {low:v}.4s, {h:v}.4h",
        "fcvtl2 {high:v}.4s, {h:v}.8h",
        low = out(vreg) low,
        high = out(vreg) high,
        h = in(vreg) halves,
        options(pure, nomem, nostack),
    );
    vst1q_f32(dst, low);
    vst1q_f32(dst.add(4), high);
}
