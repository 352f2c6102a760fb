// F32 weights. Every weight snippet defines `weight_value` (one value; `row`
// is the byte offset of a row); its `dot_` twin defines `weight_dot`, the dot
// product of group `g` of 32 values of a row (fewer at the end of a row:
// `count`) with x[xb..] of the kernel's `x` binding.

fn weight_value(row: u32, col: u32) -> f32 {
    return bitcast<f32>(w[(row >> 2u) + col]);
}
