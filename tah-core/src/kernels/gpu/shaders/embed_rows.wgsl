// Embedding rows: out[i] = E[ids[i]] for the ids inside this band of rows
// (a large matrix is split over several buffers).

struct Params {
    n: u32,
    cols: u32,
    row_bytes: u32,
    first_row: u32,
    band_rows: u32,
    out_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

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
    let id = ids[i];
    if (id >= p.first_row && id < p.first_row + p.band_rows) {
        out[i * p.out_stride + c] = weight_value((id - p.first_row) * p.row_bytes, c);
    }
}
