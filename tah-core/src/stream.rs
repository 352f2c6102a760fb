//! Generated ids to streamed text: the UTF-8-safe [`StreamDecoder`] followed
//! by stop-string matching. Text that might be the start of a stop string is
//! held back until it is known not to be, so a stop string never reaches the
//! output, even when it is split across tokens.

use crate::error::Result;
use crate::tokenizer::{StreamDecoder, TahTokenizer};

/// Stop-string matching over a stream of text deltas.
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text not yet emitted: at most a partial stop string plus one delta.
    pending: String,
}

impl StopMatcher {
    /// `stops` must not contain the empty string (config validation rejects it).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.to_vec(),
            pending: String::new(),
        }
    }

    /// Adds a delta; returns the text now safe to emit and whether a stop
    /// string was found (the text before it is then emitted, the rest dropped).
    pub fn push(&mut self, delta: &str) -> (String, bool) {
        self.pending.push_str(delta);
        // Earlier text was emitted only when no stop string could start in
        // it, so any match starts inside `pending`.
        let found = self.stops.iter().filter_map(|s| self.pending.find(s)).min();
        if let Some(at) = found {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, true);
        }
        let held = self.partial_match_len();
        let out = self.pending.drain(..self.pending.len() - held).collect();
        (out, false)
    }

    /// What is still held back (the output ended without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that starts some stop string.
    fn partial_match_len(&self) -> usize {
        self.pending
            .char_indices()
            .map(|(i, _)| &self.pending[i..])
            .find(|tail| self.stops.iter().any(|s| s.starts_with(tail)))
            .map_or(0, str::len)
    }
}

/// Token ids in, complete text deltas out (no broken character, no stop string).
pub struct TextStream {
    decoder: StreamDecoder,
    stops: StopMatcher,
}

impl TextStream {
    pub fn new(tokenizer: &TahTokenizer, stops: &[String]) -> Self {
        Self {
            decoder: StreamDecoder::new(tokenizer),
            stops: StopMatcher::new(stops),
        }
    }

    /// Adds one generated id: the text to emit and whether a stop string ended
    /// the output.
    pub fn push(&mut self, id: u32) -> Result<(String, bool)> {
        let delta = self.decoder.push(id)?;
        Ok(self.stops.push(&delta))
    }

    /// The rest of the text when the output ends without a stop string (a
    /// stop string may still complete with the decoder's last bytes).
    pub fn finish(&mut self) -> Result<(String, bool)> {
        let delta = self.decoder.finish()?;
        let (mut out, stopped) = self.stops.push(&delta);
        if !stopped {
            out.push_str(&self.stops.finish());
        }
        Ok((out, stopped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(stops: &[&str], deltas: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = Vec::new();
        for d in deltas {
            let (text, stopped) = m.push(d);
            out.push(text);
            if stopped {
                return (out, true);
            }
        }
        out.push(m.finish());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_deltas_is_excluded() {
        let (out, stopped) = run(&["STOP"], &["ab", "cS", "T", "OPxyz"]);
        assert!(stopped);
        assert_eq!(out.concat(), "abc");
        // "S" and "T" were held back until the match was certain.
        assert_eq!(out, ["ab", "c", "", ""]);
    }

    #[test]
    fn false_starts_are_released() {
        let (out, stopped) = run(&["STOP"], &["aS", "Tx", "ST"]);
        assert!(!stopped);
        assert_eq!(out, ["a", "STx", "", "ST"]);
    }

    #[test]
    fn earliest_stop_wins_and_unicode_is_respected() {
        let (out, stopped) = run(&["🧮b", "ü"], &["x🧮", "bü"]);
        assert!(stopped);
        assert_eq!(out.concat(), "x");
        let (out, stopped) = run(&["é!"], &["café", " ok"]);
        assert!(!stopped);
        assert_eq!(out, ["caf", "é ok", ""]);
    }

    #[test]
    fn emoji_stream_with_stop_string_never_splits_characters() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/qwen3-tokenizer/tokenizer.json");
        let tokenizer = TahTokenizer::from_file(&path).unwrap();
        let text = "😀 think 🧮➕ then 🎉 done";
        let ids = tokenizer.encode(text).unwrap();
        // The emoji are several byte-level tokens each.
        assert!(ids.len() > text.split(' ').count() + 3);
        let mut stream = TextStream::new(&tokenizer, &["🎉".to_string()]);
        let mut out = String::new();
        for &id in &ids {
            let (delta, stopped) = stream.push(id).unwrap();
            assert!(!delta.contains('\u{FFFD}'), "{delta:?}");
            out += &delta;
            if stopped {
                assert_eq!(out, "😀 think 🧮➕ then ");
                return;
            }
        }
        panic!("stop string not found in {out:?}");
    }
}
