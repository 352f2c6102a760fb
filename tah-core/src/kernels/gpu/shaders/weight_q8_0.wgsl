// Q8_0: 34-byte blocks of 32 values, `d: f16, qs: [i8; 32]`, w = d * q.

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 5u) * 34u;
    let at = block + 2u + (col & 31u);
    let q = extractBits(bitcast<i32>(w_byte(at)), 0u, 8u);
    return half_to_f32(w_half_bits(block)) * f32(q);
}

fn weight_group(row: u32, g: u32, count: u32) -> array<f32, 32> {
    var out: array<f32, 32>;
    let block = row + g * 34u;
    let d = half_to_f32(w_half_bits(block));
    for (var i = 0u; i < 8u; i++) {
        let word = w_word(block + 2u + 4u * i);
        for (var j = 0u; j < 4u; j++) {
            out[4u * i + j] = d * f32(signed_byte(word, j));
        }
    }
    return out;
}
