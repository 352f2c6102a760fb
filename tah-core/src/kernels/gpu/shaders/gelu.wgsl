// Exact (erf) GELU in place on rows: x = 0.5 x (1 + erf(x / sqrt 2)).

struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

// erf through erfc's Chebyshev fit (Numerical Recipes' erfcc, fractional
// error below 1.2e-7): WGSL has no erf.
fn erf(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(poly);
    return select(erfc - 1.0, 1.0 - erfc, v >= 0.0);
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let i = flat_workgroup(group_id, group_count) * 64u + t;
    if (i < p.rows * p.cols) {
        let at = p.offset + (i / p.cols) * p.stride + i % p.cols;
        let v = x[at];
        x[at] = 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
    }
}
