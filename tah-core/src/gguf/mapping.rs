//! Where a GGUF model's bytes come from and how they stay mapped: a whole
//! file, or a region of an open file (an uncompressed asset inside an
//! Android APK, reached through its descriptor), mapped read-only.
//!
//! The mapping keeps its own duplicate of the descriptor, so that the file's
//! size can be checked before every generation: a model file truncated
//! after loading would otherwise crash the process with SIGBUS at the first
//! read of a page past the new end. (A truncation *during* a generation
//! cannot be caught this way; app bundles and APKs are read-only.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, GgufProblem, Result};

/// A model file, or a model embedded in a larger file, not yet mapped.
#[derive(Debug)]
pub struct ModelFile {
    file: File,
    offset: u64,
    len: u64,
    /// What errors name: the path, or the descriptor and byte range.
    label: PathBuf,
}

impl ModelFile {
    /// The whole file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(ModelFile {
            file,
            offset: 0,
            len,
            label: path.to_path_buf(),
        })
    }

    /// The `len` bytes at `offset` of the open file `fd` (an Android
    /// `AssetFileDescriptor`'s descriptor, start offset and length). The
    /// descriptor is duplicated: the caller keeps its own and may close it
    /// as soon as this returns. A descriptor that is not open, not a regular
    /// file, or a range that is empty or reaches past the end of the file is
    /// an [`Error::InvalidArgument`].
    #[cfg(unix)]
    pub fn from_descriptor(fd: i32, offset: u64, len: u64) -> Result<Self> {
        use std::os::fd::FromRawFd;

        let invalid =
            |what: String| Error::InvalidArgument(format!("file descriptor {fd}: {what}"));
        if fd < 0 {
            return Err(invalid("not a valid descriptor".into()));
        }
        // F_DUPFD_CLOEXEC on a closed descriptor fails with EBADF; nothing is
        // assumed about `fd` until it succeeds.
        // SAFETY: fcntl only reads its integer arguments.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(invalid(format!(
                "cannot duplicate it ({})",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `dup` is a descriptor this process just opened and owns.
        let file = unsafe { File::from_raw_fd(dup) };
        let metadata = file
            .metadata()
            .map_err(|e| invalid(format!("cannot read its size ({e})")))?;
        if !metadata.is_file() {
            return Err(invalid(
                "not a regular file (a pipe, socket or directory cannot be mapped)".into(),
            ));
        }
        let size = metadata.len();
        let end = offset.checked_add(len);
        if len == 0 || end.is_none_or(|end| end > size) {
            return Err(invalid(format!(
                "bytes {offset}..{} are not inside the file ({size} bytes)",
                offset.saturating_add(len)
            )));
        }
        Ok(ModelFile {
            file,
            offset,
            len,
            label: PathBuf::from(format!(
                "file descriptor {fd} (bytes {offset}..{})",
                offset + len
            )),
        })
    }

    pub fn label(&self) -> &Path {
        &self.label
    }

    /// Maps the bytes read-only.
    pub(crate) fn map(self) -> Result<Mapping> {
        if self.len < 24 {
            return Err(Error::gguf(
                &self.label,
                GgufProblem::Truncated("the header".into()),
            ));
        }
        let len = usize::try_from(self.len)
            .map_err(|_| Error::gguf(&self.label, GgufProblem::TooLarge("the file".into())))?;
        // SAFETY: the mapping is read-only; like every mmap-based loader we
        // rely on the file not being modified while the model is loaded
        // (`Mapping::check_intact` catches a truncation between generations).
        let mmap = unsafe {
            MmapOptions::new()
                .offset(self.offset)
                .len(len)
                .map(&self.file)
        }
        .map_err(|e| Error::io(&self.label, e))?;
        Ok(Mapping {
            mmap: Arc::new(mmap),
            end: self.offset + self.len,
            file: self.file,
            label: self.label,
        })
    }
}

/// A model's mapped bytes, with the file they come from.
pub struct Mapping {
    mmap: Arc<Mmap>,
    file: File,
    /// Where the mapped bytes end in the file.
    end: u64,
    label: PathBuf,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Mapping[{} bytes of {}]",
            self.mmap.len(),
            self.label.display()
        )
    }
}

impl Mapping {
    pub fn label(&self) -> &Path {
        &self.label
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    pub(crate) fn mmap(&self) -> &Arc<Mmap> {
        &self.mmap
    }

    /// Fails with [`GgufProblem::ShrankAfterLoad`] when the file no longer
    /// holds every mapped byte, where reading them would raise SIGBUS.
    pub fn check_intact(&self) -> Result<()> {
        let size = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.label, e))?
            .len();
        if size < self.end {
            return Err(Error::gguf(
                &self.label,
                GgufProblem::ShrankAfterLoad {
                    size,
                    needed: self.end,
                },
            ));
        }
        Ok(())
    }

    /// Drops every mapped page from the process's resident set; the pages
    /// fault back in from the file on their next use, with the same bytes.
    /// Returns the resident bytes released, as far as the platform tells
    /// ([`crate::memory::mapped_resident_bytes`]).
    pub fn release_resident_pages(&self) -> usize {
        let before = crate::memory::mapped_resident_bytes(&self.mmap);
        release_range(&self.mmap, 0, self.mmap.len());
        let after = crate::memory::mapped_resident_bytes(&self.mmap);
        before.saturating_sub(after)
    }
}

/// `madvise(MADV_DONTNEED)` over `offset..offset + len` of a read-only
/// mapping: the pages leave the resident set and read back from the file.
pub(crate) fn release_range(mmap: &Mmap, offset: usize, len: usize) {
    #[cfg(unix)]
    // SAFETY: the mapping is read-only, so MADV_DONTNEED discards no data: a
    // later read faults the same bytes back in from the file. The advice is
    // only a hint; if it fails the pages just stay.
    let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    #[cfg(not(unix))]
    let _ = (mmap, offset, len);
}
