// The repetition penalty on one logits row, in place: the logit of every id
// in `seen` (distinct) is divided by `penalty` if positive, else multiplied.

struct Params {
    count: u32,
    row_offset: u32,
    penalty: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> seen: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = flat_workgroup(group_id, group_count) * 64u + t;
    if (i < p.count) {
        let at = p.row_offset + seen[i];
        let l = logits[at];
        logits[at] = select(l * p.penalty, l / p.penalty, l > 0.0);
    }
}
