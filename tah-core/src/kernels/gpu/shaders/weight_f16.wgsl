// F16 weights (2 bytes each).

fn weight_value(row: u32, col: u32) -> f32 {
    return half_to_f32(w_half_bits(row + 2u * col));
}
