// RMSNorm of rows: y = x / sqrt(mean(x^2) + eps) * weight (candle's order of
// operations). One workgroup per row.

struct Params {
    rows: u32,
    width: u32,
    x_offset: u32,
    x_stride: u32,
    y_offset: u32,
    y_stride: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

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
    let src = p.x_offset + row * p.x_stride;
    var sum = 0.0;
    for (var c = t; c < p.width; c += 64u) {
        let v = x[src + c];
        sum += v * v;
    }
    let rms = sqrt(workgroup_sum(t, sum) / f32(p.width) + p.eps);
    let dst = p.y_offset + row * p.y_stride;
    for (var c = t; c < p.width; c += 64u) {
        y[dst + c] = x[src + c] / rms * weight[c];
    }
}
