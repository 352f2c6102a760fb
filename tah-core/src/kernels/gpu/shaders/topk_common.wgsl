// Top-k by radix select, shared by the four top-k kernels.
//
// Every entry of a logits row has a 64-bit key: the high word orders the
// value like Rust's `total_cmp`, the low word is the complement of the id.
// Keys are distinct, and a larger key is a larger value, or the same value
// at a lower id: the CPU TopK's order. Up to eight passes of 8-bit digits,
// most significant first, find the k-th largest key T (`topk_histogram`,
// then `topk_select`; once a digit's bin holds exactly the entries still
// needed, the prefix alone decides and later passes return at once). The
// k entries with a key >= T are then gathered (`topk_gather`) and sorted
// (`topk_sort`). Each row's state (zeroed before the first pass):
//   [0], [1]  T so far (high, low word; the digits found, left-aligned)
//   [2]       digits found
//   [3]       entries still needed among those sharing the digits found
//   [4]       1 when done: the digits found decide
//   [5]       entries gathered
//   [8..264]  the current pass's histogram

const STATE_WORDS: u32 = 264u;
const HISTOGRAM: u32 = 8u;

fn low_key(id: u32) -> u32 {
    return ~id;
}

// Digit `d` (0 = most significant) of the key (high, low).
fn digit(high: u32, low: u32, d: u32) -> u32 {
    if (d < 4u) {
        return (high >> (24u - 8u * d)) & 0xffu;
    }
    return (low >> (56u - 8u * d)) & 0xffu;
}

fn mask_high(digits: u32) -> u32 {
    if (digits == 0u) {
        return 0u;
    }
    if (digits >= 4u) {
        return 0xffffffffu;
    }
    return 0xffffffffu << (32u - 8u * digits);
}

fn mask_low(digits: u32) -> u32 {
    if (digits <= 4u) {
        return 0u;
    }
    if (digits >= 8u) {
        return 0xffffffffu;
    }
    return 0xffffffffu << (64u - 8u * digits);
}

// Whether the key's first `digits` digits are those of T.
fn has_prefix(high: u32, low: u32, t_high: u32, t_low: u32, digits: u32) -> bool {
    return (high & mask_high(digits)) == t_high && (low & mask_low(digits)) == t_low;
}
