// Q6_K: 210-byte blocks of 256 values, `ql: [u8; 128], qh: [u8; 64],
// scales: [i8; 16], d: f16`. Each half of 128 values takes 64 `ql` bytes
// (low 4 bits), 32 `qh` bytes (2 high bits) and 8 scales; within a half,
// quarter c (32 values) uses the low (c < 2) or high nibbles of ql[l + 32 (c & 1)]
// and bits 2c..2c + 2 of qh[l]; the scale changes every 16 values.
// w = d * scale * (q - 32).

fn q6_k_value(block: u32, half: u32, quarter: u32, l: u32) -> f32 {
    let ql = w_byte(block + 64u * half + 32u * (quarter & 1u) + l);
    let qh = w_byte(block + 128u + 32u * half + l);
    let low = select(ql & 15u, ql >> 4u, quarter >= 2u);
    let q = i32(low | (((qh >> (2u * quarter)) & 3u) << 4u)) - 32;
    let scale = extractBits(bitcast<i32>(w_byte(block + 192u + 8u * half + (l >> 4u) + 2u * quarter)), 0u, 8u);
    return half_to_f32(w_half_bits(block + 208u)) * f32(scale) * f32(q);
}

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 8u) * 210u;
    let v = col & 255u;
    return q6_k_value(block, v >> 7u, (v >> 5u) & 3u, v & 31u);
}

fn weight_group(row: u32, g: u32, count: u32) -> array<f32, 32> {
    var out: array<f32, 32>;
    let block = row + (g >> 3u) * 210u;
    let half = (g >> 2u) & 1u;
    let quarter = g & 3u;
    let d = half_to_f32(w_half_bits(block + 208u));
    let ql = block + 64u * half + 32u * (quarter & 1u);
    let qh = block + 128u + 32u * half;
    let shift = select(0u, 4u, quarter >= 2u);
    for (var sixteen = 0u; sixteen < 2u; sixteen++) {
        let scale = d * f32(extractBits(bitcast<i32>(w_byte(block + 192u + 8u * half + sixteen + 2u * quarter)), 0u, 8u));
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * sixteen + 4u * i;
            let low_word = w_word(ql + l);
            let high_word = w_word(qh + l);
            for (var j = 0u; j < 4u; j++) {
                let low = (low_word >> (8u * j + shift)) & 15u;
                let high = (high_word >> (8u * j + 2u * quarter)) & 3u;
                out[l + j] = scale * f32(i32(low | (high << 4u)) - 32);
            }
        }
    }
    return out;
}
