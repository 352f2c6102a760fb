// KV cache vectors stored as f16 pairs.

fn kv_encode(i: u32, scale: f32) -> u32 {
    return pack2x16float(vec2<f32>(vector[2u * i], vector[2u * i + 1u]));
}
