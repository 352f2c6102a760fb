// Sets `count` words from `offset` to `value`.

struct Params {
    count: u32,
    offset: u32,
    value: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = flat_workgroup(group_id, group_count) * 64u + t;
    if (i < p.count) {
        out[p.offset + i] = p.value;
    }
}
