// The dot product of group `g` (32 values) of a Q8_0 row with x[xb..] (see weight_f32.wgsl).

fn weight_dot(row: u32, g: u32, count: u32, xb: u32) -> f32 {
    let block = row + g * 34u;
    var sum = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let word = w_word(block + 2u + 4u * i);
        for (var j = 0u; j < 4u; j++) {
            sum += f32(signed_byte(word, j)) * x[xb + 4u * i + j];
        }
    }
    return half_to_f32(w_half_bits(block)) * sum;
}
