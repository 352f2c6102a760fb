#![no_main]
//! A whole GGUF model file: reader, full load, a short generation.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::gguf_model(data));
