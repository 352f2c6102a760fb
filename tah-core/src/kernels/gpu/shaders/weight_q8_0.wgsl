// Q8_0: 34-byte blocks of 32 values, `d: f16, qs: [i8; 32]`, w = d * q.

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 5u) * 34u;
    let at = block + 2u + (col & 31u);
    let q = extractBits(bitcast<i32>(w_byte(at)), 0u, 8u);
    return half_to_f32(w_half_bits(block)) * f32(q);
}
