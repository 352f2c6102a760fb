// Q4_K: 144-byte blocks of 256 values, `d: f16, dmin: f16, scales: [u8; 12],
// qs: [u8; 128]`. Eight groups of 32, each with a 6-bit scale and min packed
// in `scales`; groups 2p and 2p + 1 are the low and high nibbles of
// qs[32p..32p + 32]. w = d * scale * q - dmin * min.

// (scale, min) of group j (0..8): ggml's get_scale_min_k4.
fn q4_k_scale_min(block: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(w_byte(block + 4u + j) & 63u, w_byte(block + 8u + j) & 63u);
    }
    let packed = w_byte(block + 8u + j);
    let scale_high = w_byte(block + j) >> 6u;
    let min_high = w_byte(block + 4u + j) >> 6u;
    return vec2<u32>((packed & 15u) | (scale_high << 4u), (packed >> 4u) | (min_high << 4u));
}

fn weight_value(row: u32, col: u32) -> f32 {
    let block = row + (col >> 8u) * 144u;
    let v = col & 255u;
    let group = v >> 5u;
    let byte = w_byte(block + 16u + 32u * (v >> 6u) + (v & 31u));
    let q = select(byte & 15u, byte >> 4u, (group & 1u) == 1u);
    let sm = q4_k_scale_min(block, group);
    let scale = half_to_f32(w_half_bits(block)) * f32(sm.x);
    let offset = half_to_f32(w_half_bits(block + 2u)) * f32(sm.y);
    return scale * f32(q) - offset;
}
