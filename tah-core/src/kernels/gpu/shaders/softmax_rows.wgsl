// Softmax of rows in place (the decider's normalized top-k logits). One
// workgroup per row (workgroup_reduce.wgsl is prepended).

struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

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
    let base = p.offset + row * p.stride;
    var m = -3.4028235e38;
    for (var c = t; c < p.cols; c += 64u) {
        m = max(m, x[base + c]);
    }
    let row_max = workgroup_max(t, m);
    var sum = 0.0;
    for (var c = t; c < p.cols; c += 64u) {
        let e = exp(x[base + c] - row_max);
        x[base + c] = e;
        sum += e;
    }
    let total = workgroup_sum(t, sum);
    for (var c = t; c < p.cols; c += 64u) {
        x[base + c] = x[base + c] / total;
    }
}
