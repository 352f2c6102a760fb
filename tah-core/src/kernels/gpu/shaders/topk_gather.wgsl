// Top-k, after the radix passes: the entries whose key is at least T, i.e.
// the k largest, appended (unordered) to the row's output as (high key, id)
// pairs (see topk_common.wgsl).

struct Params {
    rows: u32,
    cols: u32,
    row_stride: u32,
    block: u32,
    blocks: u32,
    k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> row_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> gathered: array<u32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let id = flat_workgroup(group_id, group_count);
    if (id >= p.rows * p.blocks) {
        return;
    }
    let row = id / p.blocks;
    let at = row * STATE_WORDS;
    let t_high = atomicLoad(&state[at]);
    let t_low = atomicLoad(&state[at + 1u]);
    let base = row_index[row] * p.row_stride;
    let start = (id % p.blocks) * p.block;
    let end = min(start + p.block, p.cols);
    for (var c = start + t; c < end; c += 256u) {
        let high = ordered_key(logits[base + c]);
        let low = low_key(c);
        if (high > t_high || (high == t_high && low >= t_low)) {
            let slot = atomicAdd(&state[at + 5u], 1u);
            if (slot < p.k) {
                gathered[2u * (row * p.k + slot)] = high;
                gathered[2u * (row * p.k + slot) + 1u] = c;
            }
        }
    }
}
