#![no_main]
//! The `iter_decider.bin` reader (zip + strict unpickler) on arbitrary bytes.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::torch_pickle(data));
