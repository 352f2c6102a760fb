// Soft embeddings: output row i mixes the embedding rows of the top
// `soft_k` running logits of top-k row hard[i], weighted by their softmax.
// Top-k rows hold ids at [row * top_k ..], values at values_base + the same.
// A band of embedding rows adds the terms of the ids it holds.

struct Params {
    n: u32,
    cols: u32,
    row_bytes: u32,
    first_row: u32,
    band_rows: u32,
    soft_k: u32,
    top_k: u32,
    values_base: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> top: array<u32>;
@group(0) @binding(3) var<storage, read> hard: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = group_id.y;
    let c = group_id.x * 64u + t;
    if (i >= p.n || c >= p.cols) {
        return;
    }
    let first = hard[i] * p.top_k;
    let values = p.values_base + first;
    let max_value = bitcast<f32>(top[values]);
    var sum = 0.0;
    for (var j = 0u; j < p.soft_k; j++) {
        sum += exp(bitcast<f32>(top[values + j]) - max_value);
    }
    var acc = 0.0;
    for (var j = 0u; j < p.soft_k; j++) {
        let id = top[first + j];
        if (id >= p.first_row && id < p.first_row + p.band_rows) {
            let weight = exp(bitcast<f32>(top[values + j]) - max_value) / sum;
            acc += weight * weight_value((id - p.first_row) * p.row_bytes, c);
        }
    }
    let at = i * p.cols + c;
    if (p.accumulate != 0u) {
        out[at] += acc;
    } else {
        out[at] = acc;
    }
}
