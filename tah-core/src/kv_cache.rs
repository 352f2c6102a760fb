//! The compact two-depth (in general D-depth) KV cache and duo-causal attention.
//!
//! Depth 1 holds K/V for every position; depth d > 1 holds K/V only for the
//! tokens that reached depth d, each entry tagged with its position. Entries of
//! every depth are stored in ascending position order, so the keys a query at
//! (p, d) may see — every (p', d') with p' <= p and d' <= d — are a prefix of
//! each depth's entries: the duo-causal mask needs no mask matrix at all.
//!
//! Rows are appended to growable buffers (amortised O(1)); nothing is ever
//! concatenated per step.

use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::matmul::{axpy, dot};

use crate::error::{Error, Result};

/// How K/V vectors are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvPrecision {
    /// Exact (4 bytes per value).
    #[default]
    F32,
    /// Half precision (2 bytes per value).
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
            VectorStore::F16(v) => v.extend(rows.iter().map(|&x| half::f16::from_f32(x))),
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

    /// Vector `index` as f32: borrowed, or widened into `scratch`.
    fn vector<'a>(&'a self, index: usize, scratch: &'a mut [f32]) -> &'a [f32] {
        let head_dim = scratch.len();
        let range = index * head_dim..(index + 1) * head_dim;
        match self {
            VectorStore::F32(v) => &v[range],
            VectorStore::F16(v) => {
                // One SIMD conversion (F16C where available), not a call per value.
                v[range].convert_to_f32_slice(scratch);
                scratch
            }
            VectorStore::Q8 { values, scales } => {
                let scale = scales[index];
                for (s, &x) in scratch.iter_mut().zip(&values[range]) {
                    *s = x as f32 * scale;
                }
                scratch
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

#[derive(Clone, Debug)]
pub struct KvCache {
    shape: KvShape,
    /// Most positions the cache may hold (the context length).
    capacity: usize,
    /// `positions[d - 1]`: position of every depth-d entry, ascending.
    positions: Vec<Vec<u32>>,
    /// `rows[layer][d - 1]`.
    rows: Vec<Vec<DepthRows>>,
    precision: KvPrecision,
}

impl KvCache {
    pub fn new(shape: KvShape, capacity: usize, precision: KvPrecision) -> Self {
        KvCache {
            shape,
            capacity,
            positions: vec![Vec::new(); shape.max_depth],
            rows: vec![vec![DepthRows::new(precision); shape.max_depth]; shape.num_layers],
            precision,
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
        self.rows
            .iter()
            .flatten()
            .map(|r| r.keys.bytes() + r.values.bytes())
            .sum()
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
            for layer in &mut self.rows {
                layer[d].keys.truncate(keep * heads, head_dim);
                layer[d].values.truncate(keep * heads, head_dim);
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
    /// entries of the pass begun at `depth`.
    pub(crate) fn append(&mut self, layer: usize, depth: usize, keys: &[f32], values: &[f32]) {
        let head_dim = self.shape.head_dim;
        let rows = &mut self.rows[layer][depth - 1];
        rows.keys.extend(keys, head_dim);
        rows.values.extend(values, head_dim);
    }

    /// Number of entries at each depth <= `depth` that a query at `position`
    /// sees: the duo-causal mask, as one prefix length per depth.
    pub fn visible_prefix(&self, depth: usize, position: u32) -> Vec<usize> {
        self.positions[..depth]
            .iter()
            .map(|ps| ps.partition_point(|&p| p <= position))
            .collect()
    }

    /// Duo-causal attention of `layer` for queries `q` (`[n][num_heads][head_dim]`,
    /// already normed and rotated) at `depth` and `positions`, writing
    /// `[n][num_heads][head_dim]` into `out`. The pass's own K/V must already be
    /// appended.
    pub(crate) fn attend(
        &self,
        layer: usize,
        depth: usize,
        positions: &[u32],
        num_heads: usize,
        q: &[f32],
        out: &mut [f32],
    ) {
        let KvShape {
            num_kv_heads,
            head_dim,
            ..
        } = self.shape;
        let group = num_heads / num_kv_heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let depth_rows = &self.rows[layer][..depth];
        let prefixes: Vec<Vec<usize>> = positions
            .iter()
            .map(|&p| self.visible_prefix(depth, p))
            .collect();
        out.par_chunks_mut(head_dim)
            .enumerate()
            .for_each(|(qh, out_row)| {
                let (i, h) = (qh / num_heads, qh % num_heads);
                let kv_head = h / group;
                let q_row = &q[qh * head_dim..(qh + 1) * head_dim];
                let visible = &prefixes[i];
                let mut scores = Vec::with_capacity(visible.iter().sum());
                let mut scratch = vec![0f32; head_dim];
                for (rows, &n) in depth_rows.iter().zip(visible) {
                    for t in 0..n {
                        let k = rows.keys.vector(t * num_kv_heads + kv_head, &mut scratch);
                        scores.push(dot(q_row, k) * scale);
                    }
                }
                softmax_in_place(&mut scores);
                out_row.fill(0.0);
                let mut weights = scores.iter();
                for (rows, &n) in depth_rows.iter().zip(visible) {
                    for t in 0..n {
                        let w = *weights.next().unwrap_or(&0.0);
                        let v = rows.values.vector(t * num_kv_heads + kv_head, &mut scratch);
                        axpy(w, v, out_row);
                    }
                }
            });
    }
}

fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in xs.iter_mut() {
        *x /= sum;
    }
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
        cache.append(0, depth, &rows, &rows);
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

    /// The compact attention equals dense attention with an explicit
    /// duo-causal mask over all (position, depth) keys.
    #[test]
    fn attend_matches_dense_masked_attention() {
        let shape = KvShape {
            num_layers: 1,
            num_kv_heads: 2,
            head_dim: 4,
            max_depth: 2,
        };
        let num_heads = 4;
        let row = shape.num_kv_heads * shape.head_dim;
        let value =
            |p: u32, d: usize, j: usize| ((p as f32 + 1.3 * d as f32) * (j as f32 + 0.7)).sin();
        let mut cache = KvCache::new(shape, 16, KvPrecision::F32);
        let keys_of = |depth: usize, ps: &[u32], cache: &mut KvCache| {
            cache.begin_pass(depth, ps).unwrap();
            let k: Vec<f32> = ps
                .iter()
                .flat_map(|&p| (0..row).map(move |j| value(p, depth, j)))
                .collect();
            let v: Vec<f32> = k.iter().map(|x| x * 2.0 - 0.5).collect();
            cache.append(0, depth, &k, &v);
        };
        keys_of(1, &[0, 1, 2, 3, 4], &mut cache);
        keys_of(2, &[1, 3, 4], &mut cache);

        let queries: [(u32, usize); 3] = [(3, 2), (4, 1), (1, 2)];
        for (p, d) in queries {
            let q: Vec<f32> = (0..num_heads * shape.head_dim)
                .map(|j| ((j as f32) * 0.37 + p as f32).cos())
                .collect();
            let mut out = vec![0.0; q.len()];
            cache.attend(0, d, &[p], num_heads, &q, &mut out);
            for h in 0..num_heads {
                let g = h / (num_heads / shape.num_kv_heads);
                let qh = &q[h * 4..h * 4 + 4];
                // Dense reference: every (p', d') with the mask applied explicitly.
                let mut logits = Vec::new();
                let mut vals = Vec::new();
                for dd in 1..=2usize {
                    for (slot, &pp) in cache.positions(dd).iter().enumerate() {
                        let allowed = pp <= p && dd <= d;
                        if !allowed {
                            continue;
                        }
                        let rows = &cache.rows[0][dd - 1];
                        let index = slot * shape.num_kv_heads + g;
                        let k = rows.keys.vector(index, &mut [0.0; 4]).to_vec();
                        let v = rows.values.vector(index, &mut [0.0; 4]).to_vec();
                        logits.push(dot(qh, &k) / 2.0);
                        vals.push(v);
                    }
                }
                softmax_in_place(&mut logits);
                for j in 0..4 {
                    let expect: f32 = logits.iter().zip(&vals).map(|(w, v)| w * v[j]).sum();
                    assert!((out[h * 4 + j] - expect).abs() < 1e-6);
                }
            }
        }
    }
}
