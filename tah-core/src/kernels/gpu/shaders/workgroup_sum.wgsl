// The sum of one value per invocation over a 64-invocation workgroup (a
// tree in workgroup memory), for the row-normalizing kernels; every
// invocation gets the total. Ends with a barrier, so it can be called again.

var<workgroup> partial: array<f32, 64>;

fn workgroup_sum(t: u32, value: f32) -> f32 {
    partial[t] = value;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial[t] += partial[t + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
