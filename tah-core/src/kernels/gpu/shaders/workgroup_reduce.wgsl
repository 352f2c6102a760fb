// The sum or the maximum of one value per invocation over a 64-invocation
// workgroup (a tree in workgroup memory), for the row-normalizing kernels;
// every invocation gets the result. Ends with a barrier, so it can be
// called again.

var<workgroup> partial: array<f32, 64>;

fn workgroup_reduce(t: u32, value: f32, take_max: bool) -> f32 {
    partial[t] = value;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            if (take_max) {
                partial[t] = max(partial[t], partial[t + stride]);
            } else {
                partial[t] += partial[t + stride];
            }
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

fn workgroup_sum(t: u32, value: f32) -> f32 {
    return workgroup_reduce(t, value, false);
}

fn workgroup_max(t: u32, value: f32) -> f32 {
    return workgroup_reduce(t, value, true);
}
