//! The compact two-depth (in general D-depth) KV cache and duo-causal attention.
//!
//! Depth 1 holds K/V for every position; depth d > 1 holds K/V only for the
//! tokens that reached depth d, each entry tagged with its position. Entries of
//! every depth are stored in ascending position order, so the keys a query at
//! (p, d) may see — every (p', d') with p' <= p and d' <= d — are a prefix of
//! each depth's entries: the duo-causal mask needs no mask matrix at all.
//!
//! Rows are appended to growable buffers (amortised O(1)); nothing is ever
//! concatenated per step. Attention over the cache lives in [`attention`].
//! The bookkeeping (which positions each depth holds) is the same for both
//! devices; a GPU model's cache keeps its vectors in GPU buffers
//! (`crate::gpu::GpuCacheState`).

mod attention;
mod persist;

use crate::error::{Error, Result};
use half::slice::HalfFloatSliceExt;

/// How K/V vectors are stored.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KvPrecision {
    /// Exact (4 bytes per value): what conformance with the reference is
    /// checked at.
    F32,
    /// Half precision (2 bytes per value), the default: half the memory,
    /// and on the fixtures the same top-1 token as f32 at 853 of 854
    /// positions and the same decisions at all (`tests/kv_precision.rs`).
    #[default]
    F16,
    /// 8-bit: every head vector quantized symmetrically with its own f32
    /// scale (1 byte per value + 4 bytes per vector).
    Q8,
}

impl std::str::FromStr for KvPrecision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(KvPrecision::F32),
            "f16" => Ok(KvPrecision::F16),
            "q8" => Ok(KvPrecision::Q8),
            other => Err(Error::InvalidArgument(format!(
                "unknown KV cache precision `{other}` (f32, f16, q8)"
            ))),
        }
    }
}

/// A growable list of `head_dim`-long vectors in one [`KvPrecision`].
#[derive(Clone, Debug)]
enum VectorStore {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    Q8 { values: Vec<i8>, scales: Vec<f32> },
}

impl VectorStore {
    fn new(precision: KvPrecision) -> Self {
        match precision {
            KvPrecision::F32 => VectorStore::F32(Vec::new()),
            KvPrecision::F16 => VectorStore::F16(Vec::new()),
            KvPrecision::Q8 => VectorStore::Q8 {
                values: Vec::new(),
                scales: Vec::new(),
            },
        }
    }

    /// Appends `rows` (whole vectors of `head_dim`).
    fn extend(&mut self, rows: &[f32], head_dim: usize) {
        match self {
            VectorStore::F32(v) => v.extend_from_slice(rows),
            VectorStore::F16(v) => {
                let start = v.len();
                v.resize(start + rows.len(), half::f16::ZERO);
                v[start..].convert_from_f32_slice(rows);
            }
            VectorStore::Q8 { values, scales } => {
                for vector in rows.chunks_exact(head_dim) {
                    let max = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                    scales.push(scale);
                    values.extend(vector.iter().map(|&x| (x / scale).round() as i8));
                }
            }
        }
    }

    /// Keeps the first `vectors` vectors.
    fn truncate(&mut self, vectors: usize, head_dim: usize) {
        match self {
            VectorStore::F32(v) => v.truncate(vectors * head_dim),
            VectorStore::F16(v) => v.truncate(vectors * head_dim),
            VectorStore::Q8 { values, scales } => {
                values.truncate(vectors * head_dim);
                scales.truncate(vectors);
            }
        }
    }

    /// Writes vector `index` as f32 into `out` (`head_dim` floats).
    fn widen(&self, index: usize, out: &mut [f32]) {
        let head_dim = out.len();
        let range = index * head_dim..(index + 1) * head_dim;
        match self {
            VectorStore::F32(v) => out.copy_from_slice(&v[range]),
            // One SIMD conversion (F16C where available), not a call per value.
            VectorStore::F16(v) => v[range].convert_to_f32_slice(out),
            VectorStore::Q8 { values, scales } => {
                let scale = scales[index];
                for (o, &x) in out.iter_mut().zip(&values[range]) {
                    *o = x as f32 * scale;
                }
            }
        }
    }

    /// The first `n` vectors of KV head `head` (of `heads`, interleaved
    /// `[entry][head]`) as an f32 matrix: `(data, row stride)`. An f32 store
    /// is read in place; the others are widened into `scratch`.
    fn head_matrix<'a>(
        &'a self,
        head: usize,
        heads: usize,
        n: usize,
        head_dim: usize,
        scratch: &'a mut Vec<f32>,
    ) -> (&'a [f32], usize) {
        if n == 0 {
            return (&[], head_dim);
        }
        match self {
            VectorStore::F32(v) => {
                let (start, stride) = (head * head_dim, heads * head_dim);
                (&v[start..start + (n - 1) * stride + head_dim], stride)
            }
            VectorStore::F16(v) => {
                scratch.resize(n * head_dim, 0.0);
                crate::kernels::widen_f16_rows(v, head, heads, head_dim, scratch);
                (scratch, head_dim)
            }
            VectorStore::Q8 { .. } => {
                scratch.resize(n * head_dim, 0.0);
                for (t, row) in scratch.chunks_exact_mut(head_dim).enumerate() {
                    self.widen(t * heads + head, row);
                }
                (scratch, head_dim)
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            VectorStore::F32(v) => v.len() * 4,
            VectorStore::F16(v) => v.len() * 2,
            VectorStore::Q8 { values, scales } => values.len() + scales.len() * 4,
        }
    }

    /// Bytes allocated, used or not.
    fn allocated_bytes(&self) -> usize {
        match self {
            VectorStore::F32(v) => v.capacity() * 4,
            VectorStore::F16(v) => v.capacity() * 2,
            VectorStore::Q8 { values, scales } => values.capacity() + scales.capacity() * 4,
        }
    }

    fn shrink_to_fit(&mut self) {
        match self {
            VectorStore::F32(v) => v.shrink_to_fit(),
            VectorStore::F16(v) => v.shrink_to_fit(),
            VectorStore::Q8 { values, scales } => {
                values.shrink_to_fit();
                scales.shrink_to_fit();
            }
        }
    }
}

/// K and V vectors of one layer at one depth, laid out `[entry][kv_head]`.
#[derive(Clone, Debug)]
struct DepthRows {
    keys: VectorStore,
    values: VectorStore,
}

impl DepthRows {
    fn new(precision: KvPrecision) -> Self {
        DepthRows {
            keys: VectorStore::new(precision),
            values: VectorStore::new(precision),
        }
    }
}

/// Shape of the cache: fixed by the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub max_depth: usize,
}

/// Where the K/V vectors live.
#[derive(Debug)]
enum Store {
    /// `rows[layer][d - 1]`.
    Cpu(Vec<Vec<DepthRows>>),
    #[cfg(feature = "gpu")]
    Gpu(Box<crate::gpu::GpuCacheState>),
}

#[derive(Debug)]
pub struct KvCache {
    shape: KvShape,
    /// Most positions the cache may hold (the context length).
    capacity: usize,
    /// `positions[d - 1]`: position of every depth-d entry, ascending.
    positions: Vec<Vec<u32>>,
    store: Store,
    precision: KvPrecision,
}

impl KvCache {
    /// A cache in host memory (a CPU model's).
    pub fn new(shape: KvShape, capacity: usize, precision: KvPrecision) -> Self {
        let rows = vec![vec![DepthRows::new(precision); shape.max_depth]; shape.num_layers];
        Self::with_store(shape, capacity, precision, Store::Cpu(rows))
    }

    /// A cache whose vectors live on the GPU (a GPU model's).
    #[cfg(feature = "gpu")]
    pub(crate) fn on_gpu(
        shape: KvShape,
        capacity: usize,
        precision: KvPrecision,
        state: crate::gpu::GpuCacheState,
    ) -> Self {
        Self::with_store(shape, capacity, precision, Store::Gpu(Box::new(state)))
    }

    fn with_store(shape: KvShape, capacity: usize, precision: KvPrecision, store: Store) -> Self {
        KvCache {
            shape,
            capacity,
            positions: vec![Vec::new(); shape.max_depth],
            store,
            precision,
        }
    }

    /// The GPU side of a GPU model's cache (None for a CPU cache).
    #[cfg(feature = "gpu")]
    pub(crate) fn gpu_state(&mut self) -> Option<&mut crate::gpu::GpuCacheState> {
        match &mut self.store {
            Store::Gpu(state) => Some(state),
            Store::Cpu(_) => None,
        }
    }

    /// The vectors of a CPU cache.
    fn cpu_rows(&self) -> Result<&Vec<Vec<DepthRows>>> {
        match &self.store {
            Store::Cpu(rows) => Ok(rows),
            #[cfg(feature = "gpu")]
            Store::Gpu(_) => Err(wrong_device()),
        }
    }

    fn cpu_rows_mut(&mut self) -> Result<&mut Vec<Vec<DepthRows>>> {
        match &mut self.store {
            Store::Cpu(rows) => Ok(rows),
            #[cfg(feature = "gpu")]
            Store::Gpu(_) => Err(wrong_device()),
        }
    }

    /// Whether the vectors live on the GPU (a GPU model's cache).
    pub fn on_gpu_device(&self) -> bool {
        match &self.store {
            Store::Cpu(_) => false,
            #[cfg(feature = "gpu")]
            Store::Gpu(_) => true,
        }
    }

    pub fn precision(&self) -> KvPrecision {
        self.precision
    }

    pub fn shape(&self) -> KvShape {
        self.shape
    }

    /// Context length: the most positions this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of positions cached (= depth-1 entries).
    pub fn len(&self) -> usize {
        self.positions[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of entries at `depth` (1-based).
    pub fn depth_len(&self, depth: usize) -> usize {
        self.positions.get(depth - 1).map_or(0, Vec::len)
    }

    /// Positions of the entries at `depth` (1-based), ascending.
    pub fn positions(&self, depth: usize) -> &[u32] {
        &self.positions[depth - 1]
    }

    /// Bytes held by K/V vectors (what the cache costs in memory).
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::Cpu(rows) => rows
                .iter()
                .flatten()
                .map(|r| r.keys.bytes() + r.values.bytes())
                .sum(),
            #[cfg(feature = "gpu")]
            Store::Gpu(state) => {
                let entries: usize = self.positions.iter().map(Vec::len).sum();
                entries * self.shape.num_layers * state.entry_bytes()
            }
        }
    }

    /// Bytes allocated for K/V vectors and positions, including room kept
    /// for growth after a truncation (a GPU cache's: its buffers).
    pub fn allocated_bytes(&self) -> usize {
        let vectors: usize = match &self.store {
            Store::Cpu(rows) => rows
                .iter()
                .flatten()
                .map(|r| r.keys.allocated_bytes() + r.values.allocated_bytes())
                .sum(),
            #[cfg(feature = "gpu")]
            Store::Gpu(state) => state.allocated_bytes(),
        };
        vectors
            + self
                .positions
                .iter()
                .map(|p| p.capacity() * 4)
                .sum::<usize>()
    }

    /// Keeps positions `< len` (like [`truncate`](Self::truncate)) and gives
    /// the memory of everything else back (to the allocator, or a GPU
    /// cache's unused buffers to the driver). Returns the bytes freed.
    pub fn shrink(&mut self, len: usize) -> usize {
        let before = self.allocated_bytes();
        self.truncate(len);
        for positions in &mut self.positions {
            positions.shrink_to_fit();
        }
        match &mut self.store {
            Store::Cpu(rows) => {
                for rows in rows.iter_mut().flatten() {
                    rows.keys.shrink_to_fit();
                    rows.values.shrink_to_fit();
                }
            }
            #[cfg(feature = "gpu")]
            Store::Gpu(state) => {
                let depth_lens: Vec<usize> = self.positions.iter().map(Vec::len).collect();
                state.shrink(&depth_lens);
            }
        }
        before.saturating_sub(self.allocated_bytes())
    }

    /// Forgets everything (keeps the allocations for reuse).
    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Keeps only positions `< len`, at every depth (prefix reuse, rollback).
    pub fn truncate(&mut self, len: usize) {
        let (heads, head_dim) = (self.shape.num_kv_heads, self.shape.head_dim);
        for (d, positions) in self.positions.iter_mut().enumerate() {
            let keep = positions.partition_point(|&p| (p as usize) < len);
            positions.truncate(keep);
            match &mut self.store {
                Store::Cpu(rows) => {
                    for layer in rows {
                        layer[d].keys.truncate(keep * heads, head_dim);
                        layer[d].values.truncate(keep * heads, head_dim);
                    }
                }
                // A GPU cache's vectors past the kept entries are just ignored.
                #[cfg(feature = "gpu")]
                Store::Gpu(_) => {}
            }
        }
    }

    /// Starts a pass at `depth` over `positions` (ascending, after everything
    /// cached at that depth, and each already cached at depth - 1). Layers then
    /// [`append`](Self::append) their K/V for exactly these entries.
    pub(crate) fn begin_pass(&mut self, depth: usize, positions: &[u32]) -> Result<()> {
        if depth == 0 || depth > self.shape.max_depth {
            return Err(Error::InvalidArgument(format!(
                "depth {depth} out of range"
            )));
        }
        let cached = &self.positions[depth - 1];
        let mut last = cached.last().map(|&p| p as i64).unwrap_or(-1);
        for &p in positions {
            if p as i64 <= last {
                return Err(Error::InvalidArgument(format!(
                    "position {p} at depth {depth} is not after position {last}"
                )));
            }
            last = p as i64;
        }
        if let Some(&max) = positions.last() {
            if depth == 1 && max as usize >= self.capacity {
                return Err(Error::ContextOverflow {
                    needed: max as usize + 1,
                    capacity: self.capacity,
                });
            }
            if depth > 1 {
                let below = &self.positions[depth - 2];
                if let Some(&p) = positions.iter().find(|p| below.binary_search(p).is_err()) {
                    return Err(Error::InvalidArgument(format!(
                        "position {p} reaches depth {depth} without depth {}",
                        depth - 1
                    )));
                }
            }
        }
        self.positions[depth - 1].extend_from_slice(positions);
        Ok(())
    }

    /// Appends the K/V rows (`[n][kv_heads][head_dim]`) of `layer` for the
    /// entries of the pass begun at `depth` (a CPU cache's).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        depth: usize,
        keys: &[f32],
        values: &[f32],
    ) -> Result<()> {
        let head_dim = self.shape.head_dim;
        let rows = match &mut self.store {
            Store::Cpu(rows) => &mut rows[layer][depth - 1],
            #[cfg(feature = "gpu")]
            Store::Gpu(_) => return Err(wrong_device()),
        };
        rows.keys.extend(keys, head_dim);
        rows.values.extend(values, head_dim);
        Ok(())
    }

    /// Number of entries at each depth <= `depth` that a query at `position`
    /// sees: the duo-causal mask, as one prefix length per depth.
    pub fn visible_prefix(&self, depth: usize, position: u32) -> Vec<usize> {
        self.positions[..depth]
            .iter()
            .map(|ps| ps.partition_point(|&p| p <= position))
            .collect()
    }
}

/// A CPU model given a GPU model's cache (or the reverse).
#[cfg(feature = "gpu")]
pub(crate) fn wrong_device() -> Error {
    Error::InvalidArgument("this KV cache belongs to a model on another device".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(max_depth: usize) -> KvShape {
        KvShape {
            num_layers: 1,
            num_kv_heads: 1,
            head_dim: 2,
            max_depth,
        }
    }

    /// Fills one pass with rows whose first key component is the position.
    fn pass(cache: &mut KvCache, depth: usize, positions: &[u32]) {
        cache.begin_pass(depth, positions).unwrap();
        let rows: Vec<f32> = positions
            .iter()
            .flat_map(|&p| [p as f32, depth as f32])
            .collect();
        cache.append(0, depth, &rows, &rows).unwrap();
    }

    #[test]
    fn duo_causal_mask_sees_earlier_positions_at_lower_or_equal_depth() {
        let mut cache = KvCache::new(shape(3), 64, KvPrecision::F32);
        pass(&mut cache, 1, &[0, 1, 2, 3, 4, 5]);
        pass(&mut cache, 2, &[1, 3, 4]);
        pass(&mut cache, 3, &[3]);
        // Depth 1 is an ordinary causal model.
        assert_eq!(cache.visible_prefix(1, 2), vec![3]);
        // A depth-2 query sees depth-1 keys up to itself and earlier hard tokens.
        assert_eq!(cache.visible_prefix(2, 3), vec![4, 2]);
        assert_eq!(cache.visible_prefix(2, 2), vec![3, 1]);
        // Depth 3 sees all three depths.
        assert_eq!(cache.visible_prefix(3, 5), vec![6, 3, 1]);
        assert_eq!(cache.visible_prefix(3, 2), vec![3, 1, 0]);
    }

    #[test]
    fn begin_pass_rejects_inconsistent_positions() {
        let mut cache = KvCache::new(shape(2), 4, KvPrecision::F32);
        pass(&mut cache, 1, &[0, 1]);
        assert!(cache.begin_pass(1, &[1]).is_err(), "not after cached");
        assert!(cache.begin_pass(2, &[1, 0]).is_err(), "not ascending");
        assert!(cache.begin_pass(2, &[2]).is_err(), "no depth-1 entry");
        assert!(matches!(
            cache.begin_pass(1, &[2, 3, 4]),
            Err(Error::ContextOverflow {
                needed: 5,
                capacity: 4
            })
        ));
        assert!(cache.begin_pass(3, &[0]).is_err(), "depth beyond max");
    }

    #[test]
    fn truncate_drops_positions_at_every_depth() {
        let mut cache = KvCache::new(shape(2), 64, KvPrecision::F32);
        pass(&mut cache, 1, &[0, 1, 2, 3]);
        pass(&mut cache, 2, &[0, 2, 3]);
        let bytes_before = cache.bytes();
        cache.truncate(2);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.positions(2), &[0]);
        assert_eq!(cache.bytes(), bytes_before * 3 / 7);
        // Appending again after a truncation continues from the kept prefix.
        pass(&mut cache, 1, &[2]);
        pass(&mut cache, 2, &[2]);
        assert_eq!(cache.positions(2), &[0, 2]);
        cache.reset();
        assert!(cache.is_empty() && cache.depth_len(2) == 0);
    }
}
