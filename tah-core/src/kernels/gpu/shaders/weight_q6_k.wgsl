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
