// Q4_0: 18-byte blocks of 32 values, `d: f16, qs: [u8; 16]`; value j is the
// low nibble of qs[j], value j + 16 the high one; w = d * (q - 8).

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 5u) * 18u;
    let c = col & 31u;
    let byte = w_byte(block + 2u + (c & 15u));
    let q = select(byte & 15u, byte >> 4u, c >= 16u);
    return half_to_f32(w_half_bits(block)) * (f32(q) - 8.0);
}

fn weight_group(row: u32, g: u32, count: u32) -> array<f32, 32> {
    var out: array<f32, 32>;
    let block = row + g * 18u;
    let d = half_to_f32(w_half_bits(block));
    for (var i = 0u; i < 4u; i++) {
        let word = w_word(block + 2u + 4u * i);
        for (var j = 0u; j < 4u; j++) {
            let byte = (word >> (8u * j)) & 0xffu;
            out[4u * i + j] = d * (f32(byte & 15u) - 8.0);
            out[4u * i + j + 16u] = d * (f32(byte >> 4u) - 8.0);
        }
    }
    return out;
}
