//! Duo-causal attention over the compact cache, as small GEMMs.
//!
//! Queries are taken in blocks of consecutive chunk rows. For one KV head
//! and one block, every depth d' <= d contributes the keys visible to the
//! block's last query (a prefix of that depth's entries); each query row
//! then masks the entries past its own prefix. So a prefill chunk costs a
//! few `[block, n] x [n, head_dim]` products per head instead of one dot
//! product and one axpy per (query, key), and a decode step is the same
//! code with a block of one.

use rayon::prelude::*;

use super::{KvCache, KvShape, VectorStore};
use crate::kernels::dense::gemm_into;
use crate::kernels::elementwise::softmax_in_place;

/// Queries per block: enough rows for the GEMM to pay off, few enough that
/// the causal rectangle (computed whole, then masked) wastes little.
const QUERY_BLOCK: usize = 64;

impl KvCache {
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
        // prefixes[i][d'-1]: how many depth-d' entries query i sees.
        let prefixes: Vec<Vec<usize>> = positions
            .iter()
            .map(|&p| self.visible_prefix(depth, p))
            .collect();
        let tasks: Vec<(usize, usize)> = (0..num_kv_heads)
            .flat_map(|kv_head| {
                (0..positions.len())
                    .step_by(QUERY_BLOCK)
                    .map(move |first| (kv_head, first))
            })
            .collect();
        let blocks: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(kv_head, first)| {
                let end = (first + QUERY_BLOCK).min(positions.len());
                let query = QueryBlock {
                    q,
                    num_heads,
                    first,
                    prefixes: &prefixes[first..end],
                };
                self.attend_block(layer, depth, kv_head, group, &query)
            })
            .collect();
        // Each block holds `[group][m][head_dim]`; rows go back to `[n][head][..]`.
        for (&(kv_head, first), block) in tasks.iter().zip(&blocks) {
            let m = block.len() / (group * head_dim);
            for (g, rows) in block.chunks_exact(m * head_dim).enumerate() {
                let h = kv_head * group + g;
                for (r, row) in rows.chunks_exact(head_dim).enumerate() {
                    let at = ((first + r) * num_heads + h) * head_dim;
                    out[at..at + head_dim].copy_from_slice(row);
                }
            }
        }
    }

    /// Attention of the `group` query heads sharing `kv_head`, for one block
    /// of queries: `[group][m][head_dim]`.
    fn attend_block(
        &self,
        layer: usize,
        depth: usize,
        kv_head: usize,
        group: usize,
        query: &QueryBlock,
    ) -> Vec<f32> {
        let KvShape {
            num_kv_heads,
            head_dim,
            ..
        } = self.shape;
        let m = query.prefixes.len();
        // Positions ascend, so the last query sees the most at every depth.
        let widths = &query.prefixes[m - 1];
        let total: usize = widths.iter().sum();
        let (mut key_scratch, mut value_scratch) =
            (vec![Vec::new(); depth], vec![Vec::new(); depth]);
        let rows = &self.rows[layer][..depth];
        let head = HeadOf {
            kv_head,
            num_kv_heads,
            head_dim,
            widths,
        };
        let keys = head.matrices(rows.iter().map(|r| &r.keys), &mut key_scratch);
        let values = head.matrices(rows.iter().map(|r| &r.values), &mut value_scratch);

        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut scores = vec![0f32; m * total];
        let mut out = vec![0f32; group * m * head_dim];
        for (g, out) in out.chunks_exact_mut(m * head_dim).enumerate() {
            let h = kv_head * group + g;
            let q_stride = query.num_heads * head_dim;
            let q_rows = &query.q[(query.first * query.num_heads + h) * head_dim..];
            // 1. Scores against each depth's visible keys: scale * Q K^T.
            let mut column = 0;
            for (&(k, k_stride), &n) in keys.iter().zip(widths) {
                gemm_into(
                    (m, n, head_dim),
                    &mut scores[column..],
                    total,
                    false,
                    (q_rows, q_stride, 1),
                    (k, 1, k_stride),
                    scale,
                );
                column += n;
            }
            // 2. The duo-causal mask (each query's own prefix per depth), softmax.
            for (row, prefix) in scores.chunks_exact_mut(total).zip(query.prefixes) {
                let mut column = 0;
                for (&visible, &n) in prefix.iter().zip(widths) {
                    row[column + visible..column + n].fill(f32::NEG_INFINITY);
                    column += n;
                }
                softmax_in_place(row);
            }
            // 3. The weighted sum of each depth's values: P V.
            let mut column = 0;
            for (&(v, v_stride), &n) in values.iter().zip(widths) {
                gemm_into(
                    (m, head_dim, n),
                    out,
                    head_dim,
                    column > 0,
                    (&scores[column..], total, 1),
                    (v, v_stride, 1),
                    1.0,
                );
                column += n;
            }
        }
        out
    }
}

/// One KV head's visible cache, `widths[d']` entries at each depth d' + 1.
struct HeadOf<'w> {
    kv_head: usize,
    num_kv_heads: usize,
    head_dim: usize,
    widths: &'w [usize],
}

impl HeadOf<'_> {
    /// Each depth's store as an f32 matrix `(data, row stride)` of the
    /// head's visible vectors (see [`VectorStore::head_matrix`]).
    fn matrices<'a>(
        &self,
        stores: impl Iterator<Item = &'a VectorStore>,
        scratch: &'a mut [Vec<f32>],
    ) -> Vec<(&'a [f32], usize)> {
        stores
            .zip(self.widths)
            .zip(scratch)
            .map(|((store, &n), s)| {
                store.head_matrix(self.kv_head, self.num_kv_heads, n, self.head_dim, s)
            })
            .collect()
    }
}

/// The queries of one block, read in place from the pass's `[n][head][..]` rows.
struct QueryBlock<'a> {
    q: &'a [f32],
    num_heads: usize,
    /// Chunk index of the block's first query.
    first: usize,
    /// Visible prefix per depth of each query of the block.
    prefixes: &'a [Vec<usize>],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvPrecision;

    /// Every (position, depth) entry of a two-depth cache with three KV
    /// heads of 5 values; depth 2 holds only some positions.
    fn filled_cache(precision: KvPrecision, len: u32) -> (KvCache, KvShape) {
        let shape = KvShape {
            num_layers: 1,
            num_kv_heads: 3,
            head_dim: 5,
            max_depth: 2,
        };
        let row = shape.num_kv_heads * shape.head_dim;
        let value =
            |p: u32, d: usize, j: usize| ((p as f32 + 1.3 * d as f32) * (j as f32 + 0.7)).sin();
        let mut cache = KvCache::new(shape, 256, precision);
        let depth2: Vec<u32> = (0..len).filter(|p| p % 3 != 1).collect();
        let all: Vec<u32> = (0..len).collect();
        for (depth, ps) in [(1, &all), (2, &depth2)] {
            cache.begin_pass(depth, ps).unwrap();
            let k: Vec<f32> = ps
                .iter()
                .flat_map(|&p| (0..row).map(move |j| value(p, depth, j)))
                .collect();
            let v: Vec<f32> = k.iter().map(|x| x * 2.0 - 0.5).collect();
            cache.append(0, depth, &k, &v);
        }
        (cache, shape)
    }

    /// Dense reference: every cached (p', d') for one query head, with the
    /// mask applied explicitly.
    fn dense_attention(cache: &KvCache, p: u32, d: usize, kv_head: usize, q: &[f32]) -> Vec<f32> {
        let KvShape {
            num_kv_heads,
            head_dim,
            ..
        } = cache.shape;
        let mut logits = Vec::new();
        let mut values = Vec::new();
        for dd in 1..=cache.shape.max_depth {
            for (slot, &pp) in cache.positions(dd).iter().enumerate() {
                if pp > p || dd > d {
                    continue;
                }
                let rows = &cache.rows[0][dd - 1];
                let index = slot * num_kv_heads + kv_head;
                let (mut k, mut v) = (vec![0.0; head_dim], vec![0.0; head_dim]);
                rows.keys.widen(index, &mut k);
                rows.values.widen(index, &mut v);
                logits.push(
                    k.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / (head_dim as f32).sqrt(),
                );
                values.push(v);
            }
        }
        softmax_in_place(&mut logits);
        (0..head_dim)
            .map(|j| logits.iter().zip(&values).map(|(w, v)| w * v[j]).sum())
            .collect()
    }

    /// The blocked attention equals dense masked attention, for chunks
    /// longer than a block (so blocks see different prefixes), both depths,
    /// grouped query heads and every cache precision.
    #[test]
    fn blocked_attention_matches_dense_masked_attention() {
        let num_heads = 6;
        for precision in [KvPrecision::F32, KvPrecision::F16, KvPrecision::Q8] {
            let (cache, shape) = filled_cache(precision, 150);
            let hd = shape.head_dim;
            for (depth, positions) in [
                (1, (0..150).collect::<Vec<u32>>()),
                (1, vec![149]),
                (2, cache.positions(2).to_vec()),
                (2, vec![0, 2, 3]),
            ] {
                let q: Vec<f32> = (0..positions.len() * num_heads * hd)
                    .map(|j| ((j as f32) * 0.37).cos())
                    .collect();
                let mut out = vec![f32::NAN; q.len()];
                cache.attend(0, depth, &positions, num_heads, &q, &mut out);
                for (i, &p) in positions.iter().enumerate() {
                    for h in 0..num_heads {
                        let at = (i * num_heads + h) * hd;
                        let kv_head = h / (num_heads / shape.num_kv_heads);
                        let expect = dense_attention(&cache, p, depth, kv_head, &q[at..at + hd]);
                        for (got, want) in out[at..at + hd].iter().zip(&expect) {
                            assert!(
                                (got - want).abs() < 1e-5,
                                "{precision:?} depth {depth} position {p} head {h}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
