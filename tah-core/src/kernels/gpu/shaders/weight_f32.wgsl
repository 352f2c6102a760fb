// F32 weights. `row` is the byte offset of a row, `g` a group of 32 values
// (fewer at the end of a row: `count`).

fn weight_value(row: u32, col: u32) -> f32 {
    return bitcast<f32>(w[(row >> 2u) + col]);
}

fn weight_group(row: u32, g: u32, count: u32) -> array<f32, 32> {
    var out: array<f32, 32>;
    let first = (row >> 2u) + g * 32u;
    for (var i = 0u; i < count; i++) {
        out[i] = bitcast<f32>(w[first + i]);
    }
    return out;
}
