// The dot product of group `g` (32 values) of a Q6_K row with x[xb..] (see weight_f32.wgsl).

fn weight_dot(row: u32, g: u32, count: u32, xb: u32) -> f32 {
    let block = row + (g >> 3u) * 210u;
    let half = (g >> 2u) & 1u;
    let quarter = g & 3u;
    let d = half_to_f32(w_half_bits(block + 208u));
    let ql = block + 64u * half + 32u * (quarter & 1u);
    let qh = block + 128u + 32u * half;
    let shift = select(0u, 4u, quarter >= 2u);
    var total = 0.0;
    for (var sixteen = 0u; sixteen < 2u; sixteen++) {
        let scale = d * f32(extractBits(bitcast<i32>(w_byte(block + 192u + 8u * half + sixteen + 2u * quarter)), 0u, 8u));
        var sum = 0.0;
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * sixteen + 4u * i;
            let low_word = w_word(ql + l);
            let high_word = w_word(qh + l);
            for (var j = 0u; j < 4u; j++) {
                let low = (low_word >> (8u * j + shift)) & 15u;
                let high = (high_word >> (8u * j + 2u * quarter)) & 3u;
                sum += f32(i32(low | (high << 4u)) - 32) * x[xb + l + j];
            }
        }
        total += scale * sum;
    }
    return total;
}
