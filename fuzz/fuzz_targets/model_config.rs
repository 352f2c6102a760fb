#![no_main]
//! `config.json`, `tah_config.json` and `lora/adapter_config.json` parsing and validation.
//! The work is in `entry_points.rs`, shared with the regression test.

#[path = "../entry_points.rs"]
mod entry_points;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entry_points::model_config(data));
