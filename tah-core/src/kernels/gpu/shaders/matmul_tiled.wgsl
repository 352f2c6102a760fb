// y = scale * x W^T (+ y) for many input rows (prefill): 64 x 64 output
// tiles (`repeat` of them side by side per workgroup), 16 values of k at a
// time through workgroup memory (8.7 KiB); each thread computes a 4 x 4
// block strided by 16, so neighbours write neighbouring columns. Weights
// are dequantized as they are loaded.

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
    // (the few-rows kernel's; unused here)
    lanes: u32,
    repeat: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> y_rows: array<u32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

// [row][k], padded to 17 so that a column read hits distinct banks.
var<workgroup> x_tile: array<array<f32, 17>, 64>;
var<workgroup> w_tile: array<array<f32, 17>, 64>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row0 = group_id.y * TILE;
    for (var tile = 0u; tile < p.repeat; tile++) {
        let col0 = (group_id.x * p.repeat + tile) * TILE;
        // Loading: thread t fills 4 consecutive k of tile row t / 4.
        let load_row = t / 4u;
        let load_k = 4u * (t % 4u);
        // acc[i][j]: rows local.y + 16 i, columns local.x + 16 j.
        var acc: array<vec4<f32>, 4>;
        let steps = (p.k + DEPTH - 1u) / DEPTH;
        for (var step = 0u; step < steps; step++) {
            let k0 = step * DEPTH + load_k;
            let x_row = row0 + load_row;
            let w_row = col0 + load_row;
            for (var i = 0u; i < 4u; i++) {
                let kk = k0 + i;
                var xv = 0.0;
                var wv = 0.0;
                if (kk < p.k) {
                    if (x_row < p.m) {
                        xv = x[p.x_offset + x_row * p.x_stride + kk];
                    }
                    if (w_row < p.n) {
                        wv = weight_value(w_row * p.row_bytes, kk);
                    }
                }
                x_tile[load_row][load_k + i] = xv;
                w_tile[load_row][load_k + i] = wv;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < DEPTH; kk++) {
                let b = vec4<f32>(
                    w_tile[local.x][kk],
                    w_tile[local.x + 16u][kk],
                    w_tile[local.x + 32u][kk],
                    w_tile[local.x + 48u][kk],
                );
                acc[0] += x_tile[local.y][kk] * b;
                acc[1] += x_tile[local.y + 16u][kk] * b;
                acc[2] += x_tile[local.y + 32u][kk] * b;
                acc[3] += x_tile[local.y + 48u][kk] * b;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            let r = row0 + local.y + 16u * i;
            if (r >= p.m) {
                continue;
            }
            let out_row = select(r, y_rows[r], p.use_rows != 0u);
            for (var jj = 0u; jj < 4u; jj++) {
                let c = col0 + local.x + 16u * jj;
                if (c < p.n) {
                    let at = p.y_offset + out_row * p.y_stride + p.y_col + c;
                    let value = p.scale * acc[i][jj];
                    if (p.accumulate != 0u) {
                        y[at] += value;
                    } else {
                        y[at] = value;
                    }
                }
            }
        }
    }
}
