//! Files that appear whole or not at all: written to a temporary file in the
//! target's directory, synced, then renamed over the target (and the
//! directory synced), so a crash or a kill mid-write leaves the previous
//! file (or none) in place.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `path` through `write`, atomically. On error nothing changes.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let temporary = temporary_path(path);
    let result = (|| {
        let file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        write(&mut writer)?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(&temporary, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&temporary, e))?;
        std::fs::rename(&temporary, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return result;
    }
    sync_directory(path);
    Ok(())
}

/// `.<name>.<pid>-<n>.partial` next to `path`: unique within the process
/// and between processes, hidden, on the same file system as the target.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()))
}

/// Makes the rename durable. Best effort: not every platform can sync a
/// directory, and the data itself is already synced.
fn sync_directory(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_failed_write_leaves_the_previous_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("tah-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.bin");
        let write = |bytes: &'static [u8]| {
            move |w: &mut BufWriter<File>| w.write_all(bytes).map_err(|e| Error::io("test", e))
        };
        write_atomically(&path, write(b"first")).unwrap();
        let failed = write_atomically(&path, |w| {
            w.write_all(b"half of the second").unwrap();
            Err(Error::InvalidArgument("stopped on purpose".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomically(&path, write(b"second")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.bin"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
