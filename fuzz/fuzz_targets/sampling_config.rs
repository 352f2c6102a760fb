#![no_main]
//! Generation settings from arbitrary JSON, then sampling.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::sampling_config(data));
