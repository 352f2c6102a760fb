// Rows plus a bias vector, in place: y[r][c] += b[c].

struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = flat_workgroup(group_id, group_count) * 64u + t;
    if (i < p.rows * p.cols) {
        let c = i % p.cols;
        y[p.offset + (i / p.cols) * p.stride + c] += b[c];
    }
}
