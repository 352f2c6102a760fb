// KV cache vectors stored as f16 pairs.

fn kv_read(at: u32, d: u32) -> f32 {
    return unpack2x16float(kv[at + d / 2u])[d & 1u];
}
