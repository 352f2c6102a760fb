// The dot product of group `g` (32 values) of a Q4_K row with x[xb..] (see weight_f32.wgsl).

fn weight_dot(row: u32, g: u32, count: u32, xb: u32) -> f32 {
    let block = row + (g >> 3u) * 144u;
    let group = g & 7u;
    let sm = q4_k_scale_min(block, group);
    let qs = block + 16u + 32u * (group >> 1u);
    let shift = 4u * (group & 1u);
    // scale * sum(q x) - offset * sum(x)
    var sum = 0.0;
    var x_sum = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let word = w_word(qs + 4u * i);
        for (var j = 0u; j < 4u; j++) {
            let xv = x[xb + 4u * i + j];
            sum += f32((word >> (8u * j + shift)) & 15u) * xv;
            x_sum += xv;
        }
    }
    let scale = half_to_f32(w_half_bits(block)) * f32(sm.x);
    let offset = half_to_f32(w_half_bits(block + 2u)) * f32(sm.y);
    return scale * sum - offset * x_sum;
}
