// Helpers shared by every kernel (the pipeline builder prepends this file).

// Workgroups are dispatched as a 2-D grid (a dimension holds at most 65535);
// kernels number them as one flat range.
fn flat_workgroup(id: vec3<u32>, count: vec3<u32>) -> u32 {
    return id.x + id.y * count.x;
}

// f16 bits to f32, exactly: unpack2x16float may flush subnormals, and small
// quantization scales are subnormal halves.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if (exponent == 0u) {
        // mantissa * 2^-24, exact in f32.
        let magnitude = f32(mantissa) * 5.9604645e-8;
        return bitcast<f32>(bitcast<u32>(magnitude) | sign);
    }
    if (exponent == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u));
    }
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

// An f32's position in Rust's `total_cmp` order, as a u32.
fn ordered_key(value: f32) -> u32 {
    let bits = bitcast<u32>(value);
    return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn key_value(key: u32) -> f32 {
    return bitcast<f32>(select(~key, key & 0x7fffffffu, (key & 0x80000000u) != 0u));
}

// Whether an f32's bits are NaN or infinite (WGSL has no isnan).
fn non_finite(value: f32) -> bool {
    return (bitcast<u32>(value) & 0x7f800000u) == 0x7f800000u;
}
