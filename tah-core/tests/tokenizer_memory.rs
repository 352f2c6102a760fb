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

use common::{tokenizer_path, Lcg};
use tah_core::tokenizer::TahTokenizer;

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks
}

/// `count` random seven-letter lowercase words (26^7 of them: nearly all
/// different), each its own entry in a BPE cache.
fn random_words(count: usize) -> String {
    let mut rng = Lcg(7);
    let mut text = String::new();
    for _ in 0..count {
        text.push(' ');
        text.extend((0..7).map(|_| char::from(b'a' + rng.below(26) as u8)));
    }
    text
}

#[test]
fn reloading_a_tokenizer_leaves_the_heap_as_it_was() {
    let text = random_words(12_000);
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
