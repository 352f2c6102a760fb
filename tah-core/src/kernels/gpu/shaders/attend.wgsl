// Duo-causal attention, one KV cache segment at a time: each (query,
// head) workgroup scores the segment's entries the query may see (a prefix:
// `prefix` holds, per query and depth, how many entries of that depth it
// sees) in tiles of 64 and folds them into its running softmax state
// (acc[head_dim], max, sum) with the online-softmax update. Grouped-query
// heads read their KV head. `first` starts the state afresh.

struct Params {
    n: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    depth_slot: u32,
    max_depth: u32,
    seg_base: u32,
    seg_len: u32,
    vector_words: u32,
    first: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kv: array<u32>;
@group(0) @binding(3) var<storage, read> prefix: array<u32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

const TILE: u32 = 64u;
const EMPTY: f32 = -3.0e38;

var<workgroup> query: array<f32, 512>;
var<workgroup> weights: array<f32, 64>;
var<workgroup> partial: array<f32, 64>;
var<workgroup> visible_count: u32;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let id = flat_workgroup(group_id, group_count);
    if (id >= p.n * p.heads) {
        return;
    }
    let i = id / p.heads;
    let head = id % p.heads;
    let kv_head = head / (p.heads / p.kv_heads);
    for (var d = t; d < p.head_dim; d += 64u) {
        query[d] = q[id * p.head_dim + d];
    }
    if (t == 0u) {
        let seen = prefix[i * p.max_depth + p.depth_slot];
        visible_count = min(max(seen, p.seg_base) - p.seg_base, p.seg_len);
    }
    let visible = workgroupUniformLoad(&visible_count);

    let state_at = id * (p.head_dim + 2u);
    var acc: array<f32, 8>;
    var running_max = EMPTY;
    var running_sum = 0.0;
    if (p.first == 0u) {
        for (var c = 0u; c < 8u; c++) {
            let d = t + 64u * c;
            if (d < p.head_dim) {
                acc[c] = state[state_at + d];
            }
        }
        running_max = state[state_at + p.head_dim];
        running_sum = state[state_at + p.head_dim + 1u];
    }
    let entry_words = 2u * p.kv_heads * p.vector_words;
    let key_at = kv_head * p.vector_words;
    let value_at = (p.kv_heads + kv_head) * p.vector_words;

    for (var tile = 0u; tile < visible; tile += TILE) {
        // 1. This thread's key: its score, then the tile's max.
        let e = tile + t;
        var score = EMPTY;
        if (e < visible) {
            let at = e * entry_words + key_at;
            var dot = 0.0;
            for (var d = 0u; d < p.head_dim; d++) {
                dot += query[d] * kv_read(at, d);
            }
            score = dot * p.scale;
        }
        partial[t] = score;
        workgroupBarrier();
        for (var stride = 32u; stride > 0u; stride /= 2u) {
            if (t < stride) {
                partial[t] = max(partial[t], partial[t + stride]);
            }
            workgroupBarrier();
        }
        let new_max = max(running_max, partial[0]);
        workgroupBarrier();
        // 2. Weights against the new max, and their sum.
        var weight = 0.0;
        if (e < visible) {
            weight = exp(score - new_max);
        }
        weights[t] = weight;
        partial[t] = weight;
        workgroupBarrier();
        for (var stride = 32u; stride > 0u; stride /= 2u) {
            if (t < stride) {
                partial[t] += partial[t + stride];
            }
            workgroupBarrier();
        }
        let rescale = exp(running_max - new_max);
        running_sum = running_sum * rescale + partial[0];
        running_max = new_max;
        // 3. The weighted values, each thread its own dimensions.
        let in_tile = min(TILE, visible - tile);
        for (var c = 0u; c < 8u; c++) {
            let d = t + 64u * c;
            if (d < p.head_dim) {
                var sum = acc[c] * rescale;
                for (var j = 0u; j < in_tile; j++) {
                    sum += weights[j] * kv_read((tile + j) * entry_words + value_at, d);
                }
                acc[c] = sum;
            }
        }
        workgroupBarrier();
    }

    for (var c = 0u; c < 8u; c++) {
        let d = t + 64u * c;
        if (d < p.head_dim) {
            state[state_at + d] = acc[c];
        }
    }
    if (t == 0u) {
        state[state_at + p.head_dim] = running_max;
        state[state_at + p.head_dim + 1u] = running_sum;
    }
}
