// Q5_0: 22-byte blocks of 32 values, `d: f16, qh: u32, qs: [u8; 16]`; the
// fifth bit of value j is bit j of qh; w = d * (q - 16).

fn q5_0_value(qh: u32, byte: u32, c: u32) -> f32 {
    let j = c & 15u;
    var q: u32;
    if (c < 16u) {
        q = (byte & 15u) | (((qh >> j) << 4u) & 0x10u);
    } else {
        q = (byte >> 4u) | ((qh >> (j + 12u)) & 0x10u);
    }
    return f32(q) - 16.0;
}

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 5u) * 22u;
    let c = col & 31u;
    let byte = w_byte(block + 6u + (c & 15u));
    return half_to_f32(w_half_bits(block)) * q5_0_value(w_word(block + 2u), byte, c);
}
