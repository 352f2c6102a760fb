#![no_main]
//! The memory-mapped safetensors weight source on arbitrary file contents.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::safetensors_weights(data));
