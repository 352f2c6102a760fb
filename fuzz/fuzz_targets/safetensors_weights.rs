#![no_main]
//! The memory-mapped safetensors weight source on arbitrary file contents:
//! open, list, and read every tensor at its declared and at a wrong shape.

use libfuzzer_sys::fuzz_target;
use tah_core::weights::{SafetensorsSource, WeightSource};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("tah-fuzz-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(source) = SafetensorsSource::open(&path) {
        for name in source.names() {
            for shape in [&[][..], &[1, 1][..], &[2][..]] {
                let _ = source.tensor(&name, shape);
            }
        }
    }
});
