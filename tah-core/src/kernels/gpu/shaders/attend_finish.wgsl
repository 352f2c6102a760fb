// The attention output from each (query, head) state: acc / sum.

struct Params {
    rows: u32,
    head_dim: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = flat_workgroup(group_id, group_count) * 64u + t;
    if (i < p.rows * p.head_dim) {
        let row = i / p.head_dim;
        let at = row * (p.head_dim + 2u);
        out[i] = state[at + i % p.head_dim] / state[at + p.head_dim + 1u];
    }
}
