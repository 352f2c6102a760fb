// Top-k, last step: sorts each row's k gathered entries (bitonic sort in
// workgroup memory, k <= 1024) by key, descending, and writes ids at
// [row * k ..] and values at values_base + the same (see topk_common.wgsl).

struct Params {
    rows: u32,
    k: u32,
    // The power of two >= k that is sorted.
    width: u32,
    values_base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gathered: array<u32>;
@group(0) @binding(2) var<storage, read_write> top: array<u32>;

const NONE: u32 = 0xffffffffu;

var<workgroup> keys: array<u32, 1024>;
var<workgroup> ids: array<u32, 1024>;

// Whether entry a comes after entry b (a smaller key; padding last).
fn after(a: u32, b: u32) -> bool {
    return keys[a] < keys[b] || (keys[a] == keys[b] && low_key(ids[a]) < low_key(ids[b]));
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group_id: vec3<u32>,
    @builtin(num_workgroups) group_count: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let row = flat_workgroup(group_id, group_count);
    if (row >= p.rows) {
        return;
    }
    for (var i = t; i < p.width; i += 256u) {
        if (i < p.k) {
            keys[i] = gathered[2u * (row * p.k + i)];
            ids[i] = gathered[2u * (row * p.k + i) + 1u];
        } else {
            keys[i] = 0u;
            ids[i] = NONE;
        }
    }
    workgroupBarrier();
    for (var size = 2u; size <= p.width; size *= 2u) {
        for (var stride = size / 2u; stride > 0u; stride /= 2u) {
            for (var i = t; i < p.width; i += 256u) {
                let j = i ^ stride;
                if (j > i) {
                    // Blocks alternate direction until the last merge sorts
                    // the whole row descending.
                    let descending = (i & size) == 0u;
                    if (after(i, j) == descending) {
                        let key = keys[i];
                        let id = ids[i];
                        keys[i] = keys[j];
                        ids[i] = ids[j];
                        keys[j] = key;
                        ids[j] = id;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    for (var i = t; i < p.k; i += 256u) {
        top[row * p.k + i] = ids[i];
        top[p.values_base + row * p.k + i] = bitcast<u32>(key_value(keys[i]));
    }
}
