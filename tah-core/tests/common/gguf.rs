//! GGUF files for tests: temporary files, and a file's parts (metadata and
//! tensors) to edit and write back through the real writer.

use std::path::{Path, PathBuf};

use tah_core::gguf::writer::{write_gguf, TensorEntry};
use tah_core::gguf::{GgufFile, Value};

/// A file in the temp dir, removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempFile(std::env::temp_dir().join(format!(
            "tah-gguf-test-{}-{n}-{label}.gguf",
            std::process::id()
        )))
    }

    /// A temp file holding `bytes`.
    pub fn with(label: &str, bytes: &[u8]) -> Self {
        let file = Self::new(label);
        std::fs::write(&file.0, bytes).unwrap();
        file
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A GGUF file taken apart: metadata (sorted by key) and tensors (sorted by
/// name) with their data.
pub struct GgufParts {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<(TensorEntry, Vec<u8>)>,
}

impl GgufParts {
    pub fn read(path: &Path) -> Self {
        let file = GgufFile::open(path).unwrap();
        let mut metadata: Vec<(String, Value)> = file
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
        let mut names: Vec<&str> = file.tensor_names().collect();
        names.sort();
        let tensors = names
            .into_iter()
            .map(|n| {
                let info = file.tensor_info(n).unwrap();
                let entry = TensorEntry {
                    name: n.to_string(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                };
                (entry, file.tensor_bytes(n).unwrap().to_vec())
            })
            .collect();
        GgufParts { metadata, tensors }
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let file = TempFile::with("parts", bytes);
        Self::read(&file.0)
    }

    /// Writes the parts through the real writer.
    pub fn write(&self, path: &Path) {
        let entries: Vec<TensorEntry> = self.tensors.iter().map(|(e, _)| e.clone()).collect();
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        write_gguf(path, &mut out, &self.metadata, &entries, |i| {
            Ok(self.tensors[i].1.clone())
        })
        .unwrap();
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let file = TempFile::new("parts");
        self.write(&file.0);
        std::fs::read(&file.0).unwrap()
    }

    /// Sets (or adds) a metadata value.
    pub fn set(&mut self, key: &str, value: Value) {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
    }

    pub fn remove_keys(&mut self, drop: impl Fn(&str) -> bool) {
        self.metadata.retain(|(k, _)| !drop(k));
    }

    pub fn remove_tensors(&mut self, drop: impl Fn(&str) -> bool) {
        self.tensors.retain(|(e, _)| !drop(&e.name));
    }

    pub fn tensor_mut(&mut self, name: &str) -> &mut (TensorEntry, Vec<u8>) {
        self.tensors
            .iter_mut()
            .find(|(e, _)| e.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }
}
