// Top-k, after a radix pass: per row, the bin of the next digit that holds
// the k-th largest key (the largest bin whose count from the top reaches
// the entries still needed); clears the histogram for the next pass (see
// topk_common.wgsl).

struct Params {
    rows: u32,
    k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> state: array<atomic<u32>>;

// suffix[b]: entries in bins b..255.
var<workgroup> suffix: array<u32, 256>;
var<workgroup> row_done: u32;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row = flat_workgroup(group_id, group_count);
    if (row >= p.rows) {
        return;
    }
    let at = row * STATE_WORDS;
    if (t == 0u) {
        row_done = atomicLoad(&state[at + 4u]);
    }
    if (workgroupUniformLoad(&row_done) != 0u) {
        return;
    }
    // Read before the barrier: the chosen thread updates them below.
    let digits = atomicLoad(&state[at + 2u]);
    let remaining = select(atomicLoad(&state[at + 3u]), p.k, digits == 0u);
    suffix[t] = atomicExchange(&state[at + HISTOGRAM + t], 0u);
    workgroupBarrier();
    for (var offset = 1u; offset < 256u; offset *= 2u) {
        var sum = suffix[t];
        if (t + offset < 256u) {
            sum += suffix[t + offset];
        }
        workgroupBarrier();
        suffix[t] = sum;
        workgroupBarrier();
    }
    var above = 0u;
    if (t < 255u) {
        above = suffix[t + 1u];
    }
    // Exactly one bin: counts from the top only grow towards bin 0.
    if (suffix[t] >= remaining && above < remaining) {
        if (digits < 4u) {
            atomicOr(&state[at], t << (24u - 8u * digits));
        } else {
            atomicOr(&state[at + 1u], t << (56u - 8u * digits));
        }
        let needed = remaining - above;
        atomicStore(&state[at + 2u], digits + 1u);
        atomicStore(&state[at + 3u], needed);
        if (suffix[t] - above == needed || digits + 1u == 8u) {
            atomicStore(&state[at + 4u], 1u);
        }
    }
}
