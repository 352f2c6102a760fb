// The dot product of group `g` (32 values) of a Q5_0 row with x[xb..] (see weight_f32.wgsl).

fn weight_dot(row: u32, g: u32, count: u32, xb: u32) -> f32 {
    let block = row + g * 22u;
    let qh = w_word(block + 2u);
    var sum = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let word = w_word(block + 6u + 4u * i);
        for (var j = 0u; j < 4u; j++) {
            let byte = (word >> (8u * j)) & 0xffu;
            let c = 4u * i + j;
            sum += q5_0_value(qh, byte, c) * x[xb + c] + q5_0_value(qh, byte, c + 16u) * x[xb + c + 16u];
        }
    }
    return half_to_f32(w_half_bits(block)) * sum;
}
