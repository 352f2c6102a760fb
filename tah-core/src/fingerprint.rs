//! A model's fingerprint: a cheap identity that ties a saved session state
//! to the weights its KV entries were computed with.
//!
//! A file's fingerprint covers its length and header in full (GGUF:
//! metadata and tensor index, so shapes, types, settings, tokenizer; a
//! safetensors file: its JSON header) and 256 samples of 256 bytes spread
//! evenly over the tensor data, so a model retrained with the same shapes is
//! told apart too, while only ~1 MiB of the weights is read.

use std::path::Path;

use crate::error::{Error, Result};

const SAMPLES: usize = 256;
const SAMPLE_BYTES: usize = 256;
/// Files up to this size are fingerprinted whole (configs, deciders).
const WHOLE_FILE_BYTES: usize = 1 << 20;

/// The fingerprint of a file's `bytes` whose first `header_len` bytes are
/// its header.
pub(crate) fn of_bytes(bytes: &[u8], header_len: usize) -> u64 {
    let header_len = header_len.min(bytes.len());
    let mut header = crc32fast::Hasher::new();
    header.update(&(bytes.len() as u64).to_le_bytes());
    header.update(&bytes[..header_len]);
    let data = &bytes[header_len..];
    let mut samples = crc32fast::Hasher::new();
    if data.len() <= SAMPLES * SAMPLE_BYTES {
        samples.update(data);
    } else {
        // The first sample starts the data, the last one ends it.
        let span = (data.len() - SAMPLE_BYTES) as u64;
        for i in 0..SAMPLES as u64 {
            let at = (i * span / (SAMPLES as u64 - 1)) as usize;
            samples.update(&data[at..at + SAMPLE_BYTES]);
        }
    }
    (u64::from(header.finalize()) << 32) | u64::from(samples.finalize())
}

/// The fingerprint of a checkpoint directory: every model file it has
/// (configs, weights, LoRA, decider), by name.
pub(crate) fn of_dir(dir: &Path) -> Result<u64> {
    const FILES: [&str; 7] = [
        "config.json",
        "tah_config.json",
        "model.safetensors",
        "lora/adapter_config.json",
        "lora/adapter_model.safetensors",
        "iter_decider.bin",
        "iter_decider.safetensors",
    ];
    let (mut high, mut low) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
    for name in FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: read-only, and only while the fingerprint is computed.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let fingerprint = of_bytes(&bytes, header_len(name, &bytes));
        for (hasher, half) in [(&mut high, fingerprint >> 32), (&mut low, fingerprint)] {
            hasher.update(name.as_bytes());
            hasher.update(&(half as u32).to_le_bytes());
        }
    }
    Ok((u64::from(high.finalize()) << 32) | u64::from(low.finalize()))
}

/// A safetensors file's header: its 8-byte length and the JSON after it.
fn header_len(name: &str, bytes: &[u8]) -> usize {
    if bytes.len() <= WHOLE_FILE_BYTES {
        return bytes.len();
    }
    match bytes.get(..8) {
        Some(len) if name.ends_with(".safetensors") => {
            let json = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
            usize::try_from(json).map_or(bytes.len(), |json| json.saturating_add(8))
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_a_file_counts() {
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let base = of_bytes(&bytes, 1000);
        assert_eq!(base, of_bytes(&bytes, 1000));
        let changed = |at: usize| {
            let mut other = bytes.clone();
            other[at] ^= 1;
            of_bytes(&other, 1000)
        };
        // The header in full, and the sampled data (the first sample starts
        // right after the header; the last ends at the end of the file).
        for at in [0, 999, 1000, bytes.len() - 1] {
            assert_ne!(changed(at), base, "byte {at}");
        }
        assert_ne!(of_bytes(&bytes[..bytes.len() - 1], 1000), base);
    }
}
