// x[xb..xb + count] . values 32g..32g + count of an F32 row (see weight_f32.wgsl).

fn weight_dot(row: u32, g: u32, count: u32, xb: u32) -> f32 {
    let first = (row >> 2u) + g * 32u;
    var sum = 0.0;
    for (var i = 0u; i < count; i++) {
        sum += bitcast<f32>(w[first + i]) * x[xb + i];
    }
    return sum;
}
