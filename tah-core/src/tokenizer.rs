//! The Qwen3 tokenizer (byte-level BPE from `tokenizer.json`) and a streaming
//! detokenizer that never splits a UTF-8 character.
//!
//! Built on the pure-Rust `tokenizers` crate (fancy-regex, no onig) so it
//! cross-compiles to Android and iOS.

use std::path::Path;
use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// What a lossy UTF-8 decode puts where bytes do not form a character.
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// A loaded tokenizer. Cloning is cheap (the vocabulary is shared).
#[derive(Clone)]
pub struct TahTokenizer {
    inner: Arc<Tokenizer>,
    /// Cached: `tokenizers` rebuilds the whole vocabulary map to count it.
    vocab_size: usize,
    /// Largest id the tokenizer can produce (ids may be sparse).
    max_token_id: u32,
}

impl TahTokenizer {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&json).map_err(|reason| Error::malformed(path, reason))
    }

    /// Parses the text of a `tokenizer.json` (as embedded in model files).
    pub fn from_json(json: &str) -> Result<Self> {
        Self::parse(json).map_err(Error::Tokenizer)
    }

    fn parse(json: &str) -> std::result::Result<Self, String> {
        // A syntax error inside some sections (`decoder`, ...) makes
        // `tokenizers` panic rather than return its error, so the whole text
        // is checked to be JSON first (found by fuzzing `gguf_model`).
        serde_json::from_str::<serde::de::IgnoredAny>(json)
            .map_err(|e| format!("invalid tokenizer.json: {e}"))?;
        let mut tokenizer: Tokenizer = json
            .parse()
            .map_err(|e| format!("invalid tokenizer.json: {e}"))?;
        // HF's fast tokenizers drop the file's truncation/padding unless asked
        // for them; a prompt must never be cut or padded silently.
        tokenizer
            .with_truncation(None)
            .map_err(|e| format!("cannot disable truncation: {e}"))?;
        tokenizer.with_padding(None);
        // No BPE word cache: `tokenizers` keeps it per thread, keyed by the
        // tokenizer instance, and never frees it (not when the tokenizer is
        // dropped, not on `clear_cache`), so every model load left up to
        // 10,000 words on each thread that had encoded with it (~4 MiB in
        // tests/tokenizer_memory.rs; the soak test's heap growth). A
        // cache of capacity 0 stores nothing; encoding then re-merges every
        // word: 10,202 tokens took 15.2-16.5 ms instead of 11.6-14.8 ms
        // (test profile, x86-64, one thread).
        let mut model = tokenizer.get_model().clone();
        model.resize_cache(0);
        tokenizer.with_model(model);
        let vocab_size = tokenizer.get_vocab_size(true);
        let max_token_id = tokenizer.get_vocab(true).into_values().max().unwrap_or(0);
        Ok(Self {
            inner: Arc::new(tokenizer),
            vocab_size,
            max_token_id,
        })
    }

    /// Tokenizes `text` like HF `tokenizer(text)`: special tokens written in the
    /// text (`<|im_start|>`...) become their ids. Nothing is added around the
    /// text (`add_special_tokens = false`, as `apply_chat_template` does), so a
    /// rendered chat prompt is encoded exactly once with its own specials.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Detokenizes `ids` like HF `tokenizer.decode(ids)` (special tokens kept,
    /// invalid UTF-8 rendered as U+FFFD). An id without a token is an error
    /// (`tokenizers` would silently skip it).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(format!("cannot decode: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer knows, added tokens included (151669 for
    /// Qwen3; the model's embedding has more rows, which have no token).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Largest token id this tokenizer produces; a model must have an
    /// embedding row for it.
    pub fn max_token_id(&self) -> u32 {
        self.max_token_id
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            Some(id) => Err(Error::InvalidArgument(format!(
                "token id {id} has no token (the tokenizer knows {} ids)",
                self.vocab_size
            ))),
            None => Ok(()),
        }
    }
}

/// Pending ids (not yet emitted) after which a run of undecodable bytes is
/// flushed as U+FFFD instead of being held back. A character is at most 4
/// bytes, so a real character is never pending this long; this only bounds
/// the window when the model emits a long run of invalid byte tokens.
const MAX_PENDING: usize = 8;

/// Incremental detokenizer for streaming output.
///
/// [`push`](Self::push) one id at a time and get back the text that is now
/// complete; a character split across byte-level tokens is held back until its
/// last byte arrives. [`finish`](Self::finish) returns what is left. The
/// concatenation of every delta and `finish()` equals
/// [`TahTokenizer::decode`] of all the ids.
///
/// It owns a clone of the tokenizer (cheap: shared vocabulary), so it can live
/// across FFI calls without borrowing. Each step decodes a bounded window (the
/// last emitted ids as context plus the pending ones), never the whole output.
pub struct StreamDecoder {
    tokenizer: TahTokenizer,
    /// `window[..emitted]` is context already emitted; the rest is pending.
    /// `window[0]` always starts a character, so decoding from it is exact.
    window: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder {
    pub fn new(tokenizer: &TahTokenizer) -> Self {
        Self {
            tokenizer: tokenizer.clone(),
            window: Vec::new(),
            emitted: 0,
        }
    }

    /// Adds one generated id; returns the newly completed text (maybe empty).
    /// An unknown id is an error and leaves the decoder unchanged.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.tokenizer.check_ids(&[id])?;
        self.window.push(id);
        let text = self.tokenizer.decode(&self.window)?;
        // Text ending in U+FFFD may be a character still missing bytes.
        if !text.ends_with(REPLACEMENT) {
            return self.emit_up_to(self.window.len(), &text);
        }
        if self.window.len() - self.emitted > MAX_PENDING {
            if let Some((cut, settled)) = self.settled_cut(&text)? {
                return self.emit_up_to(cut, &settled);
            }
        }
        Ok(String::new())
    }

    /// Returns whatever is still pending (invalid trailing bytes as U+FFFD,
    /// like `decode`) and resets the decoder for a new stream.
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.window)?;
        let delta = self.delta(&text)?;
        self.window.clear();
        self.emitted = 0;
        Ok(delta)
    }

    /// Emits the text of `window[emitted..cut]`, given `text` = decode of
    /// `window[..cut]`, and slides the window so that the ids just emitted
    /// become the context of the next step.
    fn emit_up_to(&mut self, cut: usize, text: &str) -> Result<String> {
        let delta = self.delta(text)?;
        self.window.drain(..self.emitted);
        self.emitted = cut - self.emitted;
        Ok(delta)
    }

    /// `text` (a decode of the window from its start) minus the context.
    fn delta(&self, text: &str) -> Result<String> {
        let context = self.tokenizer.decode(&self.window[..self.emitted])?;
        text.strip_prefix(context.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Tokenizer(format!(
                    "stream decoding diverged: {text:?} does not extend {context:?}"
                ))
            })
    }

    /// Finds the latest cut among the pending ids where the text before it
    /// is final: decoding both sides apart gives the same text as decoding
    /// them together (no character or invalid sequence spans the cut), and at
    /// least 3 ids (so at least 3 bytes) follow, so later bytes cannot change
    /// how the bytes before the cut are read. Returns the cut and the text of
    /// the window up to it.
    fn settled_cut(&self, text: &str) -> Result<Option<(usize, String)>> {
        let last_cut = self.window.len().saturating_sub(3);
        for cut in (self.emitted + 1..=last_cut).rev() {
            let before = self.tokenizer.decode(&self.window[..cut])?;
            let after = self.tokenizer.decode(&self.window[cut..])?;
            if text.strip_prefix(before.as_str()) == Some(after.as_str()) {
                return Ok(Some((cut, before)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// Loaded once: parsing the 11 MB tokenizer.json dominates test time.
    fn qwen3() -> &'static TahTokenizer {
        static TOKENIZER: OnceLock<TahTokenizer> = OnceLock::new();
        TOKENIZER.get_or_init(|| {
            TahTokenizer::from_file(&fixtures().join("qwen3-tokenizer/tokenizer.json"))
                .expect("fixture tokenizer loads")
        })
    }

    fn cases() -> Vec<Value> {
        ["tiny-d2-a", "tiny-d3-a"]
            .iter()
            .flat_map(|dir| {
                let path = fixtures().join(dir).join("expected.json");
                let text = std::fs::read_to_string(&path).expect("expected.json readable");
                let expected: Value = serde_json::from_str(&text).expect("expected.json parses");
                expected["cases"].as_array().expect("cases").clone()
            })
            .collect()
    }

    fn ids(value: &Value) -> Vec<u32> {
        let array = value.as_array().expect("id array");
        array
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect()
    }

    /// Streams `ids`, checking that no delta splits a character when the full
    /// text has none, and returns the deltas (the last one from `finish`).
    fn stream(tokenizer: &TahTokenizer, ids: &[u32]) -> Vec<String> {
        let full = tokenizer.decode(ids).expect("decodes");
        let mut decoder = StreamDecoder::new(tokenizer);
        let mut deltas: Vec<String> = ids.iter().map(|&id| decoder.push(id).unwrap()).collect();
        deltas.push(decoder.finish().unwrap());
        if !full.contains(REPLACEMENT) {
            assert!(
                deltas.iter().all(|d| !d.contains(REPLACEMENT)),
                "{deltas:?}"
            );
        }
        assert_eq!(deltas.concat(), full);
        deltas
    }

    #[test]
    fn tokenizer_is_shareable() {
        fn assert_traits<T: Clone + Send + Sync>() {}
        assert_traits::<TahTokenizer>();
        fn assert_send<T: Send>() {}
        assert_send::<StreamDecoder>();
    }

    #[test]
    fn vocabulary_matches_qwen3() {
        let tokenizer = qwen3();
        assert_eq!(tokenizer.vocab_size(), 151_669);
        assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(151_644));
        assert_eq!(tokenizer.token_to_id("</think>"), Some(151_668));
        assert_eq!(
            tokenizer.id_to_token(151_645).as_deref(),
            Some("<|im_end|>")
        );
        assert_eq!(tokenizer.id_to_token(151_669), None);
    }

    #[test]
    fn fixture_prompts_encode_to_reference_ids() {
        let tokenizer = qwen3();
        for case in cases() {
            let prompt = case["prompt"].as_str().expect("prompt");
            assert_eq!(tokenizer.encode(prompt).unwrap(), ids(&case["input_ids"]));
        }
    }

    #[test]
    fn fixture_decodes_match_reference_text() {
        let tokenizer = qwen3();
        for case in cases() {
            let tokens = ids(&case["decode"]["tokens"]);
            let text = case["decode"]["text"].as_str().expect("decode.text");
            assert_eq!(tokenizer.decode(&tokens).unwrap(), text);
            assert_eq!(stream(tokenizer, &tokens).concat(), text);
        }
    }

    #[test]
    fn emoji_round_trips_without_split_characters() {
        let tokenizer = qwen3();
        let text = "🧮➕ 12 กา 한국어 你好";
        let ids = tokenizer.encode(text).unwrap();
        let deltas = stream(tokenizer, &ids);
        assert_eq!(deltas.concat(), text);
        // The emoji spans several byte tokens, so some push had to hold back.
        assert!(deltas[..ids.len()].iter().any(String::is_empty));
    }

    #[test]
    fn long_runs_of_invalid_bytes_stay_bounded_and_exact() {
        let tokenizer = qwen3();
        // Byte-level BPE maps the lone continuation byte 0x80 to 'Ģ'.
        let stray = tokenizer.token_to_id("Ģ").expect("byte token");
        assert_eq!(tokenizer.decode(&[stray]).unwrap(), "\u{FFFD}");
        let mut ids = vec![stray; 20];
        ids.extend(tokenizer.encode("🧮 ok").unwrap());
        ids.extend([stray; 3]);

        let mut decoder = StreamDecoder::new(tokenizer);
        let mut out = String::new();
        for &id in &ids {
            out += &decoder.push(id).unwrap();
            assert!(decoder.window.len() <= 2 * (MAX_PENDING + 1));
        }
        out += &decoder.finish().unwrap();
        assert_eq!(out, tokenizer.decode(&ids).unwrap());
        assert!(out.contains("🧮 ok"));
    }

    #[test]
    fn unknown_ids_are_rejected() {
        let tokenizer = qwen3();
        assert!(matches!(
            tokenizer.decode(&[872, 151_669]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            tokenizer.decode(&[151_935]),
            Err(Error::InvalidArgument(_))
        ));
        let mut decoder = StreamDecoder::new(tokenizer);
        assert_eq!(decoder.push(872).unwrap(), "user");
        assert!(matches!(
            decoder.push(u32::MAX),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(decoder.push(198).unwrap(), "\n");
    }

    #[test]
    fn malformed_tokenizer_json_is_an_error() {
        assert!(matches!(
            TahTokenizer::from_json("{\"model\": 3}"),
            Err(Error::Tokenizer(_))
        ));
        assert!(matches!(
            TahTokenizer::from_json("not json"),
            Err(Error::Tokenizer(_))
        ));
        // `tokenizers` itself panics on this one.
        assert!(matches!(
            TahTokenizer::from_json("{\"decoder\": {\"type\": ]}"),
            Err(Error::Tokenizer(_))
        ));
        let missing = fixtures().join("qwen3-tokenizer/no-such-file.json");
        assert!(matches!(
            TahTokenizer::from_file(&missing),
            Err(Error::Io { .. })
        ));
        let bad =
            std::env::temp_dir().join(format!("tah-bad-tokenizer-{}.json", std::process::id()));
        std::fs::write(&bad, "{\"version\": \"1.0\"").unwrap();
        let result = TahTokenizer::from_file(&bad);
        std::fs::remove_file(&bad).unwrap();
        assert!(matches!(result, Err(Error::MalformedFile { .. })));
    }
}
