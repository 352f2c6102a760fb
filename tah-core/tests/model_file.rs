//! Models mapped from a region of an open file (an Android APK's
//! uncompressed asset, through its descriptor): the same model as from its
//! path, typed errors for descriptors and ranges that do not hold one, and a
//! typed error, not SIGBUS, when the file is truncated after loading.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use common::default_model_path;
use common::gguf::TempFile;
use tah_core::{
    CancelHandle, ChatMessage, Error, GenerationConfig, GgufProblem, LoadOptions, ModelFile,
    Prompt, TahModel, TahSession,
};

/// The default model embedded after `before` bytes and followed by 3000
/// more, as an asset inside an archive.
fn embedded(before: usize) -> (TempFile, u64, u64) {
    let model = std::fs::read(default_model_path()).unwrap();
    let file = TempFile::new("embedded");
    let mut out = File::create(&file.0).unwrap();
    out.write_all(&vec![0xA5; before]).unwrap();
    out.write_all(&model).unwrap();
    out.write_all(&vec![0x5A; 3000]).unwrap();
    (file, before as u64, model.len() as u64)
}

fn answer(model: TahModel) -> Vec<u32> {
    let mut session = TahSession::new(Arc::new(model));
    let config = GenerationConfig {
        max_new_tokens: 24,
        ..GenerationConfig::greedy()
    };
    let prompt = Prompt::Chat(vec![ChatMessage::user("What is 347 + 589?")]);
    session
        .generate(&prompt, &config, &CancelHandle::new(), &mut |_| {})
        .unwrap()
        .token_ids
}

fn load_region(fd: i32, offset: u64, len: u64) -> tah_core::Result<TahModel> {
    TahModel::load_file(
        ModelFile::from_descriptor(fd, offset, len)?,
        &LoadOptions::default(),
    )
}

#[test]
fn a_model_inside_a_larger_file_answers_like_its_own_file() {
    let expected = answer(TahModel::load(&default_model_path(), &LoadOptions::default()).unwrap());
    assert!(!expected.is_empty());
    // Page-aligned, and only 4-byte aligned (zipalign's guarantee).
    for before in [4096, 1000] {
        let (file, offset, len) = embedded(before);
        let opened = File::open(&file.0).unwrap();
        let model = load_region(opened.as_raw_fd(), offset, len).unwrap();
        // The model keeps its own descriptor: the caller's may be closed.
        drop(opened);
        assert_eq!(answer(model), expected, "model at offset {before}");
    }
}

#[test]
fn descriptors_and_ranges_that_hold_no_model_are_typed_errors() {
    let (file, offset, len) = embedded(4096);
    let opened = File::open(&file.0).unwrap();
    let fd = opened.as_raw_fd();
    let size = offset + len + 3000;
    let invalid = |result: tah_core::Result<TahModel>, label: &str| match result {
        Err(Error::InvalidArgument(reason)) => println!("{label:<28} -> InvalidArgument: {reason}"),
        Err(e) => panic!("{label}: expected InvalidArgument, got {e}"),
        Ok(_) => panic!("{label}: loaded"),
    };
    let gguf = |result: tah_core::Result<TahModel>, label: &str| match result {
        Err(e @ Error::Gguf { .. }) => println!("{label:<28} -> Gguf: {e}"),
        Err(e) => panic!("{label}: expected a GGUF error, got {e}"),
        Ok(_) => panic!("{label}: loaded"),
    };
    invalid(load_region(-1, offset, len), "descriptor -1");
    invalid(load_region(987_654, offset, len), "a descriptor not open");
    let dir = File::open(std::env::temp_dir()).unwrap();
    invalid(load_region(dir.as_raw_fd(), 0, 4096), "a directory");
    invalid(load_region(fd, offset, 0), "length 0");
    invalid(load_region(fd, offset, len + 3001), "length past the end");
    invalid(load_region(fd, size, 1), "offset at the end");
    invalid(load_region(fd, u64::MAX, 2), "offset overflowing");
    gguf(load_region(fd, offset + 4, len - 4), "offset 4 bytes late");
    gguf(load_region(fd, offset - 8, len), "offset 8 bytes early");
    gguf(load_region(fd, offset, len / 2), "length cut in half");
    gguf(load_region(fd, offset, 20), "length shorter than a header");
    // One byte off: the magic does not match (or, past it, the alignment).
    gguf(load_region(fd, offset + 1, len - 1), "offset 1 byte late");
    // The file itself still loads from the right range.
    load_region(fd, offset, len).unwrap();

    // A whole model at an offset without its 4-byte alignment (an archive
    // that was not zipaligned): a typed error, not a misaligned read.
    let (odd, offset, len) = embedded(1001);
    let opened = File::open(&odd.0).unwrap();
    gguf(
        load_region(opened.as_raw_fd(), offset, len),
        "a model at an odd offset",
    );
}

#[test]
fn a_model_file_truncated_after_loading_fails_generation_without_a_crash() {
    let file = TempFile::new("truncated");
    std::fs::copy(default_model_path(), &file.0).unwrap();
    let model = TahModel::load(&file.0, &LoadOptions::default()).unwrap();
    let mut session = TahSession::new(Arc::new(model));
    let prompt = Prompt::Raw("What is 2 + 2?".into());
    let config = GenerationConfig {
        max_new_tokens: 4,
        ..GenerationConfig::greedy()
    };
    let cancel = CancelHandle::new();
    session
        .generate(&prompt, &config, &cancel, &mut |_| {})
        .unwrap();
    let cached = session.cached_tokens();
    // The weights' pages leave memory, then the file shrinks under the mapping.
    session.model().release_weight_pages();
    let len = std::fs::metadata(&file.0).unwrap().len();
    File::options()
        .write(true)
        .open(&file.0)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let error = session
        .generate(&prompt, &config, &cancel, &mut |_| {})
        .unwrap_err();
    println!("{error}");
    assert!(
        matches!(
            &error,
            Error::Gguf {
                problem: GgufProblem::ShrankAfterLoad { .. },
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(session.cached_tokens(), cached, "the cache was not touched");
}
