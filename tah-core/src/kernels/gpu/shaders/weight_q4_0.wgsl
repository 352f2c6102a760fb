// Q4_0: 18-byte blocks of 32 values, `d: f16, qs: [u8; 16]`; value j is the
// low nibble of qs[j], value j + 16 the high one; w = d * (q - 8).

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 5u) * 18u;
    let c = col & 31u;
    let byte = w_byte(block + 2u + (c & 15u));
    let q = select(byte & 15u, byte >> 4u, c >= 16u);
    return half_to_f32(w_half_bits(block)) * (f32(q) - 8.0);
}
