// BF16 weights: the top half of an f32.

fn weight_value(row: u32, col: u32) -> f32 {
    return bitcast<f32>(w_half_bits(row + 2u * col) << 16u);
}

fn weight_group(row: u32, g: u32, count: u32) -> array<f32, 32> {
    var out: array<f32, 32>;
    let first = row + 64u * g;
    for (var i = 0u; i < count; i++) {
        out[i] = bitcast<f32>(w_half_bits(first + 2u * i) << 16u);
    }
    return out;
}
