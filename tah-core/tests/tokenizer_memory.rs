//! Loading a tokenizer, encoding with it and dropping it leaves nothing on
//! the heap. `tokenizers` keeps its BPE word cache per thread and never frees
//! it, so with the cache on every load left up to 10,000 words (~4 MiB of
//! these) on each thread that had encoded; an app that reloads its model after a
//! memory warning, or switches models, grew by that much each time.
//!
//! Measured as the C heap's bytes in use (glibc's `mallinfo2`), in a binary
//! of its own so that no other test allocates meanwhile.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use common::tokenizer_path;
use tah_core::tokenizer::TahTokenizer;

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks
}

/// `count` different lowercase words, each its own entry in a BPE cache.
fn distinct_words(count: usize) -> String {
    let mut text = String::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..count {
        text.push(' ');
        for _ in 0..7 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push(char::from(b'a' + (state >> 59) as u8 % 26));
        }
    }
    text
}

#[test]
fn reloading_a_tokenizer_leaves_the_heap_as_it_was() {
    let text = distinct_words(12_000);
    let load_and_encode = || {
        let tokenizer = TahTokenizer::from_file(&tokenizer_path()).unwrap();
        assert!(tokenizer.encode(&text).unwrap().len() > 12_000);
    };
    // Warm-up: the allocator's and the tokenizer's one-time state.
    load_and_encode();
    let before = heap_in_use();
    for _ in 0..3 {
        load_and_encode();
    }
    let grown = heap_in_use().saturating_sub(before);
    println!(
        "heap in use after 3 more loads and encodes: +{} KiB",
        grown / 1024
    );
    // With the cache the three rounds kept 12 MiB; without it, 69 KiB.
    assert!(grown < 1024 * 1024, "the heap grew by {} KiB", grown / 1024);
}
