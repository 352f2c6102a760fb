#![no_main]
//! The `iter_decider.bin` reader (zip + strict unpickler) on arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use tah_core::torch_pickle::TorchCheckpoint;

fuzz_target!(|data: &[u8]| {
    let _ = TorchCheckpoint::from_bytes(data, std::path::Path::new("fuzz.bin"));
});
