// The dot product of group `g` (32 values) of a F16 row with x[xb..] (see weight_f32.wgsl).

fn weight_dot(row: u32, g: u32, count: u32, xb: u32) -> f32 {
    let first = row + 64u * g;
    var sum = 0.0;
    for (var i = 0u; i < count; i++) {
        sum += half_to_f32(w_half_bits(first + 2u * i)) * x[xb + i];
    }
    return sum;
}
