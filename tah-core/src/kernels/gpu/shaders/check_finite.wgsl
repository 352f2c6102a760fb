// Records the first row holding NaN or infinity: flags[slot] = min(row).

struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    stride: u32,
    slot: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = flat_workgroup(group_id, group_count) * 64u + t;
    if (i < p.rows * p.cols) {
        let r = i / p.cols;
        if (non_finite(x[p.offset + r * p.stride + i % p.cols])) {
            atomicMin(&flags[p.slot], r);
        }
    }
}
