#![no_main]
//! Arbitrary (also invalid) UTF-8 through the chat template, the Qwen3 tokenizer and the streaming decoder.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::chat_tokenizer(data));
