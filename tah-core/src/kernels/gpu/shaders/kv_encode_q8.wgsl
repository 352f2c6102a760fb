// KV cache vectors stored as 8-bit values with one f32 scale (word 0),
// x = q * scale, q = round(x / scale) with scale = max |x| / 127.

fn kv_encode(i: u32, scale: f32) -> u32 {
    if (i == 0u) {
        return bitcast<u32>(scale);
    }
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
        let v = vector[4u * (i - 1u) + j] / scale;
        // Rounded half away from zero, like the CPU cache.
        let q = i32(sign(v) * floor(abs(v) + 0.5));
        word |= (bitcast<u32>(clamp(q, -127, 127)) & 0xffu) << (8u * j);
    }
    return word;
}
