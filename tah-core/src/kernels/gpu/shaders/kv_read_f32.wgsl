// KV cache vectors stored as f32 words.

fn kv_read(at: u32, d: u32) -> f32 {
    return bitcast<f32>(kv[at + d]);
}
