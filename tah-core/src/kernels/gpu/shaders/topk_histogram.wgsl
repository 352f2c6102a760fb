// Top-k, one radix pass: each workgroup counts the next digit of the keys
// of one block of a row that share the digits found so far, into the
// row's histogram (see topk_common.wgsl).

struct Params {
    rows: u32,
    cols: u32,
    row_stride: u32,
    block: u32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> row_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> state: array<atomic<u32>>;

var<workgroup> histogram: array<atomic<u32>, 256>;
var<workgroup> row_done: u32;

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
    atomicStore(&histogram[t], 0u);
    if (t == 0u) {
        row_done = atomicLoad(&state[at + 4u]);
    }
    if (workgroupUniformLoad(&row_done) != 0u) {
        return;
    }
    let t_high = atomicLoad(&state[at]);
    let t_low = atomicLoad(&state[at + 1u]);
    let digits = atomicLoad(&state[at + 2u]);
    let base = row_index[row] * p.row_stride;
    let start = (id % p.blocks) * p.block;
    let end = min(start + p.block, p.cols);
    for (var c = start + t; c < end; c += 256u) {
        let high = ordered_key(logits[base + c]);
        let low = low_key(c);
        if (has_prefix(high, low, t_high, t_low, digits)) {
            atomicAdd(&histogram[digit(high, low, digits)], 1u);
        }
    }
    workgroupBarrier();
    let count = atomicLoad(&histogram[t]);
    if (count > 0u) {
        atomicAdd(&state[at + HISTOGRAM + t], count);
    }
}
