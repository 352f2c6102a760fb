// Qwen3's per-head RMSNorm of queries or keys, then RoPE (rotate-half), in
// place on [token][head][head_dim] rows. `rope` holds (cos, sin) of every
// token and frequency, computed on the CPU exactly as the CPU path does.

struct Params {
    rows: u32,
    heads: u32,
    head_dim: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row = flat_workgroup(group_id, group_count);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.head_dim;
    let half = p.head_dim / 2u;
    var sum = 0.0;
    for (var c = t; c < p.head_dim; c += 64u) {
        let v = x[base + c];
        sum += v * v;
    }
    let rms = sqrt(workgroup_sum(t, sum) / f32(p.head_dim) + p.eps);
    let token = row / p.heads;
    for (var j = t; j < half; j += 64u) {
        let a = x[base + j] / rms * weight[j];
        let b = x[base + j + half] / rms * weight[j + half];
        let angle = 2u * (token * half + j);
        let cos_v = rope[angle];
        let sin_v = rope[angle + 1u];
        x[base + j] = a * cos_v - b * sin_v;
        x[base + j + half] = b * cos_v + a * sin_v;
    }
}
