// F16 weights (2 bytes each).

fn weight_value(row: u32, col: u32) -> f32 {
    return half_to_f32(w_half_bits(row + 2u * col));
}

fn weight_group(row: u32, g: u32, count: u32) -> array<f32, 32> {
    var out: array<f32, 32>;
    let first = row + 64u * g;
    for (var i = 0u; i < count; i++) {
        out[i] = half_to_f32(w_half_bits(first + 2u * i));
    }
    return out;
}
