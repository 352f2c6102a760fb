// Byte access into a weight matrix uploaded as it is stored in the model
// file (`w`, declared by the kernel): GGUF blocks are byte-packed, and their
// 2-byte fields always sit at even offsets (every block and row size is even).

fn w_byte(at: u32) -> u32 {
    return (w[at >> 2u] >> ((at & 3u) * 8u)) & 0xffu;
}

// The 16 bits at even byte offset `at`.
fn w_half_bits(at: u32) -> u32 {
    return (w[at >> 2u] >> ((at & 2u) * 8u)) & 0xffffu;
}

// The 32 bits at even byte offset `at` (straddling two words when `at` is 2 mod 4).
fn w_word(at: u32) -> u32 {
    let i = at >> 2u;
    if ((at & 2u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16u) | (w[i + 1u] << 16u);
}

// Byte `j` of `word` as a signed integer.
fn signed_byte(word: u32, j: u32) -> i32 {
    return extractBits(bitcast<i32>(word), 8u * j, 8u);
}
