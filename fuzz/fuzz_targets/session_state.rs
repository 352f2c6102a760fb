#![no_main]
//! A saved session state, restored into the tiny seed model and continued.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::session_state(data));
