//! What a malformed model file must produce: a specific typed error, checked
//! by kind and by a fragment of what it names. Shared by the HF-directory and
//! GGUF corpora.

use tah_core::{Error, TahModel};

/// The kind of error a case must produce, plus a fragment of its message.
#[derive(Debug)]
pub enum Expect {
    Io,
    Malformed(&'static str),
    Missing(&'static str),
    Shape(&'static str),
    Dtype,
    Config(&'static str),
    /// A GGUF problem whose `Debug` form starts with one of the
    /// `|`-separated alternatives (`"Truncated|TooLarge"`).
    Gguf(&'static str),
    Tokenizer(&'static str),
    ChatTemplate(&'static str),
    /// Loads (the damage is in quantized weights, which are not scanned at
    /// load time) but the first generation fails with `NonFiniteOutput`.
    NonFiniteOutput,
}

/// Checks that `err` is what `expect` says; returns its message.
pub fn check_error(label: &str, err: &Error, expect: &Expect) -> String {
    let message = err.to_string();
    let ok = match (expect, err) {
        (Expect::Io, Error::Io { .. }) => true,
        (Expect::Malformed(s), Error::MalformedFile { .. }) => message.contains(s),
        (Expect::Missing(s), Error::MissingTensor { name, .. }) => name.contains(s),
        (Expect::Shape(s), Error::ShapeMismatch { name, .. }) => name.contains(s),
        (Expect::Dtype, Error::UnsupportedDtype { .. }) => true,
        (Expect::Config(s), Error::InvalidConfig { .. }) => message.contains(s),
        (Expect::Gguf(kinds), Error::Gguf { problem, .. }) => {
            let debug = format!("{problem:?}");
            kinds.split('|').any(|k| debug.starts_with(k))
        }
        (Expect::Tokenizer(s), Error::Tokenizer(m)) => m.contains(s),
        (Expect::ChatTemplate(s), Error::ChatTemplate(m)) => m.contains(s),
        (Expect::NonFiniteOutput, Error::NonFiniteOutput { .. }) => true,
        _ => false,
    };
    assert!(ok, "{label}: expected {expect:?}, got {err:?}");
    message
}

/// A load that must fail as `expect` says.
pub fn check(label: &str, result: Result<TahModel, Error>, expect: &Expect) -> String {
    match result {
        Ok(_) => panic!("{label}: loaded a malformed model"),
        Err(e) => check_error(label, &e, expect),
    }
}
