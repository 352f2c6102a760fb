// KV cache vectors stored as 8-bit values with one f32 scale (word 0),
// x = q * scale, q = round(x / scale) with scale = max |x| / 127.

fn kv_read(at: u32, d: u32) -> f32 {
    let word = kv[at + 1u + d / 4u];
    return f32(extractBits(bitcast<i32>(word), 8u * (d & 3u), 8u)) * bitcast<f32>(kv[at]);
}
