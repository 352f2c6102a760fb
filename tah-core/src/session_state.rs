//! Saved session states: what a [`TahSession`] holds between generations —
//! its cached token ids, the KV entries of both depths (depth 2 only for the
//! hard tokens, as in memory), the settings those entries were computed
//! with, the kept prefix and the conversation — in one versioned file tied
//! to its model by a fingerprint.
//!
//! Nothing of the sampler outlives a generation (its generator is seeded
//! from the generation's `seed` when the generation starts), so a restored
//! session continues exactly as the saved one would have.
//!
//! Layout (little-endian): the magic `TAHSTATE`, the format version (u32),
//! then sections, each `kind: u32, length: u64, payload, CRC-32 of the three`:
//! settings (1), token ids (2), conversation (3), positions of the depths
//! past the first (4), one K/V section per layer and depth (5), end (6).
//! Every length is checked against what the settings imply and against the
//! file before anything is allocated. The file is written through a
//! temporary file renamed into place (`crate::atomic_file`).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::chat_template::{ChatMessage, Role};
use crate::error::{Error, GpuProblem, Result, StateProblem};
use crate::iteration::{IterationMode, IterationPolicy};
use crate::kv_cache::{KvCache, KvPrecision, KvShape};
use crate::session::{CacheKey, TahSession};
use crate::tah_model::TahModel;

const MAGIC: &[u8; 8] = b"TAHSTATE";
/// The layout written; files of other versions are refused.
pub const STATE_FORMAT_VERSION: u32 = 1;

const SETTINGS: u32 = 1;
const TOKENS: u32 = 2;
const CONVERSATION: u32 = 3;
const POSITIONS: u32 = 4;
const KV: u32 = 5;
const END: u32 = 6;

impl TahSession {
    /// Writes the session's state to `path` (atomically: a crash mid-save
    /// leaves the previous file). Returns the file's size in bytes.
    pub fn save_state(&self, path: &Path) -> Result<u64> {
        cpu_only(&self.cache, "saving a session state")?;
        let mut written = 0u64;
        crate::atomic_file::write_atomically(path, |w| {
            let mut out = SectionWriter {
                w,
                path,
                written: 0,
            };
            out.w.write_all(MAGIC).map_err(|e| Error::io(path, e))?;
            out.w
                .write_all(&STATE_FORMAT_VERSION.to_le_bytes())
                .map_err(|e| Error::io(path, e))?;
            out.written = 12;
            self.write_sections(&mut out)?;
            written = out.written;
            Ok(())
        })
        .map_err(|e| as_state_error(path, e))?;
        Ok(written)
    }

    /// A session of `model` holding the state saved in `path`. A damaged
    /// file, one of a newer format version, or one saved with another model
    /// or other KV settings is an [`Error::SessionState`]; a model on the
    /// GPU gives [`GpuProblem::CpuOnly`] (as [`save_state`](Self::save_state)
    /// does).
    pub fn restore(model: Arc<TahModel>, path: &Path) -> Result<TahSession> {
        let mut session = TahSession::new(model);
        cpu_only(&session.cache, "restoring a session state")?;
        let file = File::open(path).map_err(|e| state_io(path, e))?;
        let len = file.metadata().map_err(|e| state_io(path, e))?.len();
        let mut input = SectionReader {
            r: BufReader::with_capacity(1 << 20, file),
            remaining: len,
            path,
        };
        // A file that does not start like a state file is not one, however short.
        let mut head = [0u8; 12];
        let available = input.remaining.min(12) as usize;
        input.read_exact(&mut head[..available], "the header")?;
        let magic = available.min(MAGIC.len());
        if head[..magic] != MAGIC[..magic] {
            return Err(Error::session_state(path, StateProblem::NotAStateFile));
        }
        if available < head.len() {
            return Err(truncated(path, "the header"));
        }
        let version = u32::from_le_bytes(head[8..].try_into().unwrap_or_default());
        if version != STATE_FORMAT_VERSION {
            return Err(Error::session_state(
                path,
                StateProblem::UnsupportedVersion {
                    found: version,
                    supported: STATE_FORMAT_VERSION,
                },
            ));
        }
        session.read_sections(&mut input)?;
        Ok(session)
    }

    fn write_sections(&self, out: &mut SectionWriter<impl Write>) -> Result<()> {
        let shape = self.cache.shape();
        let mut settings = Vec::new();
        settings.extend(self.model.fingerprint().to_le_bytes());
        settings.push(precision_code(self.cache.precision()));
        for n in [
            shape.num_layers,
            shape.num_kv_heads,
            shape.head_dim,
            shape.max_depth,
        ] {
            settings.extend((n as u32).to_le_bytes());
        }
        settings.extend((self.cache.capacity() as u64).to_le_bytes());
        write_cache_key(&mut settings, self.cache_key);
        settings.extend((self.kept_prefix as u64).to_le_bytes());
        for depth in 1..=shape.max_depth {
            settings.extend((self.cache.depth_len(depth) as u64).to_le_bytes());
        }
        out.section(SETTINGS, &[&settings])?;
        out.section(TOKENS, &[bytemuck::cast_slice(&self.tokens)])?;
        out.section(CONVERSATION, &[&encode_conversation(&self.history)])?;
        let deeper: Vec<&[u8]> = (2..=shape.max_depth)
            .map(|d| bytemuck::cast_slice(self.cache.positions(d)))
            .collect();
        out.section(POSITIONS, &deeper)?;
        for layer in 0..shape.num_layers {
            for depth in 1..=shape.max_depth {
                out.section(KV, &self.cache.entry_bytes(layer, depth)?)?;
            }
        }
        out.section(END, &[])
    }

    fn read_sections(&mut self, input: &mut SectionReader) -> Result<()> {
        let path = input.path;
        let settings = input.small_section(SETTINGS, "the settings", 1 << 12)?;
        let saved = Settings::parse(&settings)
            .ok_or_else(|| malformed(path, "the settings section is too short"))?;
        saved.check_against(self, path)?;
        let shape = self.cache.shape();
        let n = saved.depth_lens[0];

        let tokens = input.sized_section(TOKENS, "the token ids", n * 4)?;
        self.tokens = u32s(&tokens);
        let conversation = input.small_section(CONVERSATION, "the conversation", u64::MAX)?;
        self.history = decode_conversation(&conversation)
            .ok_or_else(|| malformed(path, "the conversation does not decode"))?;
        let deeper_len: usize = saved.depth_lens[1..].iter().sum();
        let deeper = input.sized_section(POSITIONS, "the positions", deeper_len * 4)?;
        let mut positions = vec![(0..n as u32).collect::<Vec<u32>>()];
        let mut at = 0;
        for &len in &saved.depth_lens[1..] {
            positions.push(u32s(&deeper[at..at + len * 4]));
            at += len * 4;
        }
        let cache = &mut self.cache;
        let entry_lens: Vec<usize> = saved
            .depth_lens
            .iter()
            .map(|&len| cache.entry_byte_len(len))
            .collect();
        let filled = cache.restore(positions, |layer, depth, parts| {
            let what = format!("the K/V entries of layer {layer} at depth {depth}");
            input.section_into(KV, &what, entry_lens[depth - 1], parts)
        });
        match filled {
            Err(Error::InvalidArgument(reason)) => return Err(malformed(path, &reason)),
            other => other?,
        }
        input.sized_section(END, "the end marker", 0)?;
        if input.remaining != 0 {
            return Err(malformed(path, "bytes follow the end marker"));
        }
        debug_assert_eq!(self.cache.shape(), shape);
        self.cache_key = saved.cache_key;
        self.kept_prefix = saved.kept_prefix.min(n);
        Ok(())
    }
}

/// A GPU cache's vectors are not saved or restored (yet): a typed error
/// before any file is touched, rather than a state file the CPU reads.
fn cpu_only(cache: &KvCache, what: &str) -> Result<()> {
    if cache.on_gpu_device() {
        return Err(GpuProblem::CpuOnly(what.into()).into());
    }
    Ok(())
}

/// The settings section.
struct Settings {
    fingerprint: u64,
    precision: u8,
    shape: [usize; 4],
    cache_key: Option<CacheKey>,
    kept_prefix: usize,
    /// Entries per depth (depth 1: the token count).
    depth_lens: Vec<usize>,
}

impl Settings {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let mut r = ByteReader(bytes);
        let fingerprint = r.u64()?;
        let precision = r.u8()?;
        let shape = [
            r.u32()? as usize,
            r.u32()? as usize,
            r.u32()? as usize,
            r.u32()? as usize,
        ];
        let _saved_context = r.u64()?;
        let cache_key = read_cache_key(&mut r)?;
        let kept_prefix = usize::try_from(r.u64()?).ok()?;
        let mut depth_lens = Vec::new();
        for _ in 0..shape[3].min(64) {
            depth_lens.push(usize::try_from(r.u64()?).ok()?);
        }
        r.0.is_empty().then_some(Settings {
            fingerprint,
            precision,
            shape,
            cache_key,
            kept_prefix,
            depth_lens,
        })
    }

    /// The file must come from this model, with this cache layout, and fit.
    fn check_against(&self, session: &TahSession, path: &Path) -> Result<()> {
        let model = session.model.fingerprint();
        if self.fingerprint != model {
            return Err(Error::session_state(
                path,
                StateProblem::ForeignModel(format!(
                    "model fingerprint {:016x}, the loaded model's is {model:016x}",
                    self.fingerprint
                )),
            ));
        }
        let KvShape {
            num_layers,
            num_kv_heads,
            head_dim,
            max_depth,
        } = session.cache.shape();
        if self.shape != [num_layers, num_kv_heads, head_dim, max_depth] {
            return Err(Error::session_state(
                path,
                StateProblem::ForeignModel(format!(
                    "KV layout {:?} (layers, KV heads, head size, depths), the model's is {:?}",
                    self.shape,
                    [num_layers, num_kv_heads, head_dim, max_depth]
                )),
            ));
        }
        let precision = session.cache.precision();
        if self.precision != precision_code(precision) {
            return Err(Error::session_state(
                path,
                StateProblem::SettingsMismatch(format!(
                    "KV precision {}, the model was loaded with {precision:?}",
                    precision_name(self.precision)
                )),
            ));
        }
        let (n, capacity) = (self.depth_lens[0], session.cache.capacity());
        if n > capacity {
            return Err(Error::session_state(
                path,
                StateProblem::SettingsMismatch(format!(
                    "{n} cached tokens, the model's context holds {capacity}"
                )),
            ));
        }
        if self.depth_lens.windows(2).any(|w| w[1] > w[0]) {
            return Err(malformed(
                path,
                "a depth holds more entries than the one below",
            ));
        }
        Ok(())
    }
}

fn precision_code(p: KvPrecision) -> u8 {
    match p {
        KvPrecision::F32 => 0,
        KvPrecision::F16 => 1,
        KvPrecision::Q8 => 2,
    }
}

fn precision_name(code: u8) -> String {
    match code {
        0 => "F32".into(),
        1 => "F16".into(),
        2 => "Q8".into(),
        other => format!("#{other}"),
    }
}

fn write_cache_key(out: &mut Vec<u8>, key: Option<CacheKey>) {
    let Some(key) = key else {
        out.push(0);
        return;
    };
    out.push(1);
    out.push(match key.policy.mode {
        IterationMode::Decider => 0,
        IterationMode::Never => 1,
        IterationMode::Always => 2,
    });
    match key.policy.threshold {
        Some(t) => {
            out.push(1);
            out.extend(t.to_bits().to_le_bytes());
        }
        None => out.extend([0; 5]),
    }
    match key.hard_token_budget {
        Some(b) => {
            out.push(1);
            out.extend(b.to_le_bytes());
        }
        None => out.extend([0; 5]),
    }
}

/// `Some(None)`: no key; `None`: malformed.
fn read_cache_key(r: &mut ByteReader) -> Option<Option<CacheKey>> {
    if r.u8()? == 0 {
        return Some(None);
    }
    let mode = match r.u8()? {
        0 => IterationMode::Decider,
        1 => IterationMode::Never,
        2 => IterationMode::Always,
        _ => return None,
    };
    let threshold = match (r.u8()?, f32::from_bits(r.u32()?)) {
        (0, _) => None,
        (1, t) if t.is_finite() => Some(t),
        _ => return None,
    };
    let hard_token_budget = match (r.u8()?, r.u32()?) {
        (0, _) => None,
        (1, b) if b <= 100 => Some(b),
        _ => return None,
    };
    Some(Some(CacheKey {
        policy: IterationPolicy {
            mode,
            threshold,
            forced_hard_rate: None,
        },
        hard_token_budget,
    }))
}

fn encode_conversation(messages: &[ChatMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((messages.len() as u32).to_le_bytes());
    for m in messages {
        out.push(match m.role {
            Role::System => 0,
            Role::User => 1,
            Role::Assistant => 2,
        });
        out.extend((m.content.len() as u64).to_le_bytes());
        out.extend(m.content.as_bytes());
    }
    out
}

fn decode_conversation(bytes: &[u8]) -> Option<Vec<ChatMessage>> {
    let mut r = ByteReader(bytes);
    let count = r.u32()?;
    let mut messages = Vec::new();
    for _ in 0..count {
        let role = match r.u8()? {
            0 => Role::System,
            1 => Role::User,
            2 => Role::Assistant,
            _ => return None,
        };
        let len = usize::try_from(r.u64()?).ok()?;
        let content = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        messages.push(ChatMessage { role, content });
    }
    r.0.is_empty().then_some(messages)
}

/// Little-endian u32s.
fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Little-endian values off the front of a byte slice.
struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

struct SectionWriter<'a, W: Write> {
    w: &'a mut W,
    path: &'a Path,
    written: u64,
}

impl<W: Write> SectionWriter<'_, W> {
    /// One section whose payload is `parts`, one after the other.
    fn section(&mut self, kind: u32, parts: &[&[u8]]) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&kind.to_le_bytes());
        head[4..].copy_from_slice(&(len as u64).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        let io = |e| Error::io(self.path, e);
        self.w.write_all(&head).map_err(io)?;
        for part in parts {
            crc.update(part);
            self.w.write_all(part).map_err(io)?;
        }
        self.w
            .write_all(&crc.finalize().to_le_bytes())
            .map_err(io)?;
        self.written += 16 + len as u64;
        Ok(())
    }
}

struct SectionReader<'a> {
    r: BufReader<File>,
    /// Bytes of the file not read yet.
    remaining: u64,
    path: &'a Path,
}

impl SectionReader<'_> {
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        if (buf.len() as u64) > self.remaining {
            return Err(truncated(self.path, what));
        }
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => truncated(self.path, what),
            _ => state_io(self.path, e),
        })?;
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    /// Reads a section header of `kind`; returns its length (at most
    /// `max_len` and what the file still holds) and the checksum so far.
    fn header(
        &mut self,
        kind: u32,
        what: &str,
        max_len: u64,
    ) -> Result<(usize, crc32fast::Hasher)> {
        let mut head = [0u8; 12];
        self.read_exact(&mut head, what)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        let found = u32::from_le_bytes(head[..4].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(head[4..].try_into().unwrap_or_default());
        if found != kind {
            return Err(self.corrupted(what));
        }
        if len > self.remaining.saturating_sub(4) {
            return Err(truncated(self.path, what));
        }
        if len > max_len {
            return Err(self.corrupted(what));
        }
        Ok((len as usize, crc))
    }

    fn check_crc(&mut self, crc: crc32fast::Hasher, what: &str) -> Result<()> {
        let mut stored = [0u8; 4];
        self.read_exact(&mut stored, what)?;
        if u32::from_le_bytes(stored) != crc.finalize() {
            return Err(self.corrupted(what));
        }
        Ok(())
    }

    /// A whole section of at most `max_len` bytes.
    fn small_section(&mut self, kind: u32, what: &str, max_len: u64) -> Result<Vec<u8>> {
        let (len, mut crc) = self.header(kind, what, max_len)?;
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, what)?;
        crc.update(&payload);
        self.check_crc(crc, what)?;
        Ok(payload)
    }

    /// A whole section of exactly `len` bytes.
    fn sized_section(&mut self, kind: u32, what: &str, len: usize) -> Result<Vec<u8>> {
        let payload = self.small_section(kind, what, len as u64)?;
        if payload.len() != len {
            return Err(self.corrupted(what));
        }
        Ok(payload)
    }

    /// A section of exactly `len` bytes read straight into `parts`.
    fn section_into(
        &mut self,
        kind: u32,
        what: &str,
        len: usize,
        parts: &mut [&mut [u8]],
    ) -> Result<()> {
        let (found, mut crc) = self.header(kind, what, len as u64)?;
        if found != len || parts.iter().map(|p| p.len()).sum::<usize>() != len {
            return Err(self.corrupted(what));
        }
        for part in parts.iter_mut() {
            self.read_exact(part, what)?;
            crc.update(part);
        }
        self.check_crc(crc, what)
    }

    fn corrupted(&self, what: &str) -> Error {
        Error::session_state(self.path, StateProblem::Corrupted(what.to_string()))
    }
}

fn truncated(path: &Path, what: &str) -> Error {
    Error::session_state(path, StateProblem::Truncated(what.to_string()))
}

fn malformed(path: &Path, reason: &str) -> Error {
    Error::session_state(path, StateProblem::Malformed(reason.to_string()))
}

fn state_io(path: &Path, e: std::io::Error) -> Error {
    Error::session_state(path, StateProblem::Io(e.to_string()))
}

/// Saving fails as a session-state error whatever the cause.
fn as_state_error(path: &Path, e: Error) -> Error {
    match e {
        Error::Io { source, .. } => state_io(path, source),
        e @ Error::SessionState { .. } => e,
        other => Error::session_state(path, StateProblem::Io(other.to_string())),
    }
}
