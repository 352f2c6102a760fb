//! Where a model is loaded from: a path, or a region of an open file.

/// What [`crate::TahModel::load_from`] loads.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ModelSource {
    /// A `.gguf` file or a checkpoint directory.
    Path { path: String },
    /// A `.gguf` model stored in the `length` bytes at `offset` of the open
    /// file `fd`: on Android, an asset kept uncompressed in the APK
    /// (`androidResources { noCompress += "gguf" }`), through
    /// `assets.openFd(name)`: its `parcelFileDescriptor.fd`, `startOffset`
    /// and `length`. The bytes are mapped in place, not copied. The
    /// descriptor is duplicated, so the caller may close its own once the
    /// load returns. `offset` must keep the model's 4-byte alignment (the
    /// APK packer's, zipalign's, does). A descriptor that is not open or not
    /// a regular file, or a range outside the file, is `InvalidArgument`;
    /// a range that does not hold a model is `ModelLoad`.
    Fd { fd: i32, offset: u64, length: u64 },
}

/// The model file region of a descriptor source.
#[cfg(unix)]
pub(crate) fn model_file(
    fd: i32,
    offset: u64,
    length: u64,
) -> tah_core::Result<tah_core::ModelFile> {
    tah_core::ModelFile::from_descriptor(fd, offset, length)
}

#[cfg(not(unix))]
pub(crate) fn model_file(
    fd: i32,
    _offset: u64,
    _length: u64,
) -> tah_core::Result<tah_core::ModelFile> {
    Err(tah_core::Error::InvalidArgument(format!(
        "file descriptor {fd}: descriptor sources need a Unix system (Android, iOS, Linux, macOS)"
    )))
}
