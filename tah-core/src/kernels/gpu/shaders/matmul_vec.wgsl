// y = scale * x W^T (+ y) for a few input rows (decode, the hard tokens of a
// chunk): each weight row is read once for all of them. `lanes` threads (a
// power of two up to 64, about the row's groups of 32 values) share a
// weight row, each taking every lanes-th group; a workgroup covers
// 64 / lanes weight rows at a time, `repeat` times (fewer, longer
// workgroups for a large matrix). `y_rows` optionally maps input row r to
// output row y_rows[r].

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
    repeat: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> y_rows: array<u32>;

var<workgroup> partial: array<array<f32, 8>, 64>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let first_set = flat_workgroup(group_id, group_count) * p.repeat;
    let lane = t % p.lanes;
    for (var row_set = 0u; row_set < p.repeat; row_set++) {
        let j = (first_set + row_set) * (64u / p.lanes) + t / p.lanes;
        // One accumulator per input row, in registers (an array indexed by
        // the row would live in memory).
        var a0 = 0.0;
        var a1 = 0.0;
        var a2 = 0.0;
        var a3 = 0.0;
        var a4 = 0.0;
        var a5 = 0.0;
        var a6 = 0.0;
        var a7 = 0.0;
        if (j < p.n) {
            let row = j * p.row_bytes;
            let groups = (p.k + 31u) / 32u;
            let s = p.x_stride;
            for (var g = lane; g < groups; g += p.lanes) {
                let count = min(32u, p.k - 32u * g);
                let xb = p.x_offset + 32u * g;
                a0 += weight_dot(row, g, count, xb);
                if (p.m > 1u) { a1 += weight_dot(row, g, count, xb + s); }
                if (p.m > 2u) { a2 += weight_dot(row, g, count, xb + 2u * s); }
                if (p.m > 3u) { a3 += weight_dot(row, g, count, xb + 3u * s); }
                if (p.m > 4u) { a4 += weight_dot(row, g, count, xb + 4u * s); }
                if (p.m > 5u) { a5 += weight_dot(row, g, count, xb + 5u * s); }
                if (p.m > 6u) { a6 += weight_dot(row, g, count, xb + 6u * s); }
                if (p.m > 7u) { a7 += weight_dot(row, g, count, xb + 7u * s); }
            }
        }
        partial[t] = array<f32, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
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
        // The next row_set reuses `partial`.
        workgroupBarrier();
    }
}
