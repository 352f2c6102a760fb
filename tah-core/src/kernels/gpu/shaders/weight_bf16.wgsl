// BF16 weights: the top half of an f32.

fn weight_value(row: u32, col: u32) -> f32 {
    return bitcast<f32>(w_half_bits(row + 2u * col) << 16u);
}
