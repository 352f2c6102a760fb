// y = scale * x W^T (+ y) for a few input rows (decode, the hard tokens of a
// chunk): each weight row is read once for all of them. `lanes` threads (a
// power of two up to 64, about the row's groups of 32 values) share a
// weight row, each taking every lanes-th group; a workgroup covers
// 64 / lanes weight rows. `y_rows` optionally maps input row r to output
// row y_rows[r].

struct Params {
    m: u32,
    n: u32,
    k: u32,
    row_bytes: u32,
    x_offset: u32,
    x_stride: u32,
    y_offset: u32,
    y_stride: u32,
    y_col: u32,
    accumulate: u32,
    scale: f32,
    use_rows: u32,
    lanes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> y_rows: array<u32>;

const MAX_M: u32 = 8u;

var<workgroup> partial: array<array<f32, 8>, 64>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let j = flat_workgroup(group_id, group_count) * (64u / p.lanes) + t / p.lanes;
    let lane = t % p.lanes;
    var acc: array<f32, 8>;
    if (j < p.n) {
        let row = j * p.row_bytes;
        let groups = (p.k + 31u) / 32u;
        for (var g = lane; g < groups; g += p.lanes) {
            let count = min(32u, p.k - 32u * g);
            let values = weight_group(row, g, count);
            for (var r = 0u; r < p.m; r++) {
                let base = p.x_offset + r * p.x_stride + 32u * g;
                var sum = 0.0;
                for (var i = 0u; i < count; i++) {
                    sum += values[i] * x[base + i];
                }
                acc[r] += sum;
            }
        }
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var stride = p.lanes / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            for (var r = 0u; r < p.m; r++) {
                partial[t][r] += partial[t + stride][r];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && j < p.n) {
        for (var r = 0u; r < p.m; r++) {
            let out_row = select(r, y_rows[r], p.use_rows != 0u);
            let at = p.y_offset + out_row * p.y_stride + p.y_col + j;
            let value = p.scale * partial[t][r];
            if (p.accumulate != 0u) {
                y[at] += value;
            } else {
                y[at] = value;
            }
        }
    }
}
