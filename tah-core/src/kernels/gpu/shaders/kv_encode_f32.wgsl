// KV cache vectors stored as f32 words.

fn kv_encode(i: u32, scale: f32) -> u32 {
    return bitcast<u32>(vector[i]);
}
