// Writes a pass's K and V rows ([row][kv_head][head_dim] f32) into a KV
// cache segment as entries entry0.. (each entry: K of every KV head, then
// V; each vector `vector_words` words in the cache's precision). One
// workgroup per (row, KV head, K or V).

struct Params {
    rows: u32,
    kv_heads: u32,
    head_dim: u32,
    src_row: u32,
    entry0: u32,
    vector_words: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> kv: array<u32>;

// One head vector (head_dim <= 512), zero past its end.
var<workgroup> vector: array<f32, 516>;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let id = flat_workgroup(group_id, group_count);
    if (id >= 2u * p.rows * p.kv_heads) {
        return;
    }
    let which = id % 2u;
    let head = (id / 2u) % p.kv_heads;
    let row = id / (2u * p.kv_heads);
    let src = ((p.src_row + row) * p.kv_heads + head) * p.head_dim;
    var largest = 0.0;
    for (var d = t; d < 516u; d += 64u) {
        var value = 0.0;
        if (d < p.head_dim) {
            if (which == 0u) {
                value = k[src + d];
            } else {
                value = v[src + d];
            }
        }
        vector[d] = value;
        largest = max(largest, abs(value));
    }
    partial[t] = largest;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial[t] = max(partial[t], partial[t + stride]);
        }
        workgroupBarrier();
    }
    let scale = select(1.0, partial[0] / 127.0, partial[0] > 0.0);
    let entry = (p.entry0 + row) * 2u * p.kv_heads * p.vector_words;
    let dst = entry + (which * p.kv_heads + head) * p.vector_words;
    for (var i = t; i < p.vector_words; i += 64u) {
        kv[dst + i] = kv_encode(i, scale);
    }
}
