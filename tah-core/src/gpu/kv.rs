//! The KV cache's vectors on the GPU: per layer and depth, a list of
//! segments (buffers of up to `segment_entries` entries; an entry is the K
//! and V vectors of every KV head of one (position, depth), in the cache's
//! precision). Depth d > 1 holds only the hard tokens' entries, so it stays
//! small; the last segment grows by doubling, full segments never move, and
//! no segment outgrows a storage binding. Which position each entry holds
//! is `KvCache`'s bookkeeping, shared with the CPU cache.

use crate::error::{GpuProblem, Result};
use crate::kernels::gpu::{grid, params, GpuContext, Kernel, Recorder};
use crate::kv_cache::KvPrecision;

/// Entries a fresh segment starts with.
const FIRST_CAPACITY: usize = 64;

struct Segment {
    buffer: wgpu::Buffer,
    capacity: usize,
}

/// A segment's share of a depth's entries: `len` entries from `base`.
pub(crate) struct SegmentView<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub base: usize,
    pub len: usize,
}

pub(crate) struct GpuKv {
    /// `segments[layer][depth - 1]`.
    segments: Vec<Vec<Vec<Segment>>>,
    segment_entries: usize,
    /// Words per entry (K and V of every KV head).
    entry_words: usize,
    /// Words per K or V vector.
    vector_words: usize,
    kv_heads: usize,
    head_dim: usize,
    precision: KvPrecision,
}

impl std::fmt::Debug for GpuKv {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "GpuKv[{:?}, {} words per entry]",
            self.precision, self.entry_words
        )
    }
}

impl GpuKv {
    pub fn new(
        context: &GpuContext,
        layers: usize,
        max_depth: usize,
        kv_heads: usize,
        head_dim: usize,
        precision: KvPrecision,
        segment_entries: Option<usize>,
    ) -> Result<Self> {
        let vector_words = crate::kernels::gpu::vector_words(precision, head_dim);
        let entry_words = 2 * kv_heads * vector_words;
        let per_binding = (context.max_binding / (4 * entry_words as u64)) as usize;
        if per_binding == 0 {
            return Err(GpuProblem::OverLimits {
                what: "one KV cache entry".into(),
                needed: 4 * entry_words as u64,
                limit: context.max_binding,
            }
            .into());
        }
        Ok(GpuKv {
            segments: (0..layers)
                .map(|_| (0..max_depth).map(|_| Vec::new()).collect())
                .collect(),
            segment_entries: segment_entries.unwrap_or(usize::MAX).clamp(1, per_binding),
            entry_words,
            vector_words,
            kv_heads,
            head_dim,
            precision,
        })
    }

    pub fn entry_bytes(&self) -> usize {
        4 * self.entry_words
    }

    /// Bytes of every segment's buffer.
    pub fn allocated_bytes(&self) -> usize {
        let entries: usize = self
            .segments
            .iter()
            .flatten()
            .flatten()
            .map(|seg| seg.capacity)
            .sum();
        entries * self.entry_bytes()
    }

    /// Drops the segments no entry below `depth_lens[d - 1]` lies in (at
    /// every layer): a trimmed cache's buffers go back to the driver, and
    /// [`reserve`](Self::reserve) makes new ones as entries arrive.
    pub fn release_unused(&mut self, depth_lens: &[usize]) {
        let per_segment = self.segment_entries;
        for layer in &mut self.segments {
            for (segments, &len) in layer.iter_mut().zip(depth_lens) {
                segments.truncate(len.div_ceil(per_segment));
            }
        }
    }

    pub fn vector_words(&self) -> usize {
        self.vector_words
    }

    /// Makes room for entries up to `needed` at (layer, depth), copying a
    /// grown segment's old entries in `rec` (before anything that reads it).
    pub fn reserve(
        &mut self,
        context: &GpuContext,
        rec: &mut Recorder,
        layer: usize,
        depth: usize,
        needed: usize,
    ) -> Result<()> {
        let entry_bytes = self.entry_bytes() as u64;
        let per_segment = self.segment_entries;
        let segments = &mut self.segments[layer][depth - 1];
        for s in 0..needed.div_ceil(per_segment) {
            let want = (needed - s * per_segment).min(per_segment);
            let have = segments.get(s).map_or(0, |seg| seg.capacity);
            if have >= want {
                continue;
            }
            let capacity = want.max(2 * have).max(FIRST_CAPACITY).min(per_segment);
            let buffer = context.buffer(
                "KV cache",
                capacity as u64 * entry_bytes,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            )?;
            match segments.get_mut(s) {
                Some(old) => {
                    rec.copy(
                        &old.buffer,
                        0,
                        &buffer,
                        0,
                        old.capacity as u64 * entry_bytes,
                    );
                    *old = Segment { buffer, capacity };
                }
                None => segments.push(Segment { buffer, capacity }),
            }
        }
        Ok(())
    }

    /// The segments holding the first `len` entries of (layer, depth).
    pub fn segments(&self, layer: usize, depth: usize, len: usize) -> Vec<SegmentView<'_>> {
        let per_segment = self.segment_entries;
        self.segments[layer][depth - 1]
            .iter()
            .enumerate()
            .take(len.div_ceil(per_segment))
            .map(|(s, seg)| SegmentView {
                buffer: &seg.buffer,
                base: s * per_segment,
                len: (len - s * per_segment).min(per_segment),
            })
            .collect()
    }

    /// Writes `rows` K/V rows (`[row][kv_head][head_dim]` f32 in `k`, `v`)
    /// as entries `first..` of (layer, depth); room must be reserved.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        rec: &mut Recorder,
        layer: usize,
        depth: usize,
        first: usize,
        rows: usize,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
    ) {
        for segment in self.segments(layer, depth, first + rows) {
            let start = first.max(segment.base);
            let end = (first + rows).min(segment.base + segment.len);
            if start >= end {
                continue;
            }
            rec.dispatch(
                Kernel::KvAppend(self.precision),
                params![
                    end - start,
                    self.kv_heads,
                    self.head_dim,
                    start - first,
                    start - segment.base,
                    self.vector_words,
                ],
                &[k, v, segment.buffer],
                grid(2 * (end - start) * self.kv_heads),
            );
        }
    }
}
