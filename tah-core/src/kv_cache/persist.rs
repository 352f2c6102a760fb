//! The cache's contents as bytes, for saved session states
//! (`crate::session_state`): positions per depth, and the K/V vectors of
//! every layer and depth exactly as stored (f32, f16 bits, or int8 with
//! their f32 scales), little-endian.

use half::slice::HalfFloatSliceExt;

use super::{DepthRows, KvCache, VectorStore};
use crate::error::{Error, Result};

#[cfg(target_endian = "big")]
compile_error!("saved session states are little-endian; a big-endian port must convert them");

impl VectorStore {
    /// The stored bytes: one slice, or a q8 store's values then scales.
    fn byte_parts(&self) -> Vec<&[u8]> {
        match self {
            VectorStore::F32(v) => vec![bytemuck::cast_slice(v)],
            VectorStore::F16(v) => vec![bytemuck::cast_slice(v.reinterpret_cast())],
            VectorStore::Q8 { values, scales } => {
                vec![bytemuck::cast_slice(values), bytemuck::cast_slice(scales)]
            }
        }
    }

    /// Sized for `vectors` vectors of `head_dim`, as byte slices to fill.
    fn byte_parts_mut(&mut self, vectors: usize, head_dim: usize) -> Vec<&mut [u8]> {
        let values = vectors * head_dim;
        match self {
            VectorStore::F32(v) => {
                v.resize(values, 0.0);
                vec![bytemuck::cast_slice_mut(v)]
            }
            VectorStore::F16(v) => {
                v.resize(values, half::f16::ZERO);
                vec![bytemuck::cast_slice_mut(v.reinterpret_cast_mut())]
            }
            VectorStore::Q8 {
                values: q,
                scales: s,
            } => {
                q.resize(values, 0);
                s.resize(vectors, 0.0);
                vec![bytemuck::cast_slice_mut(q), bytemuck::cast_slice_mut(s)]
            }
        }
    }
}

impl KvCache {
    /// The bytes of `layer`'s K/V vectors at `depth` (1-based): keys, then
    /// values (a CPU cache's only).
    pub(crate) fn entry_bytes(&self, layer: usize, depth: usize) -> Result<Vec<&[u8]>> {
        let rows = &self.cpu_rows()?[layer][depth - 1];
        let mut parts = rows.keys.byte_parts();
        parts.extend(rows.values.byte_parts());
        Ok(parts)
    }

    /// How many bytes [`entry_bytes`](Self::entry_bytes) gives for `entries`
    /// entries of one layer and depth.
    pub(crate) fn entry_byte_len(&self, entries: usize) -> usize {
        let vectors = entries * self.shape.num_kv_heads;
        let per_store = match self.precision {
            super::KvPrecision::F32 => vectors * self.shape.head_dim * 4,
            super::KvPrecision::F16 => vectors * self.shape.head_dim * 2,
            super::KvPrecision::Q8 => vectors * (self.shape.head_dim + 4),
        };
        2 * per_store
    }

    /// Replaces the contents with `positions` (per depth; depth 1 must be
    /// `0..n`, every deeper depth ascending and reached from the depth below)
    /// and the vectors `fill(layer, depth, parts)` writes into the byte
    /// slices of [`entry_bytes`](Self::entry_bytes)' layout. On error the
    /// cache is left empty.
    pub(crate) fn restore(
        &mut self,
        positions: Vec<Vec<u32>>,
        mut fill: impl FnMut(usize, usize, &mut [&mut [u8]]) -> Result<()>,
    ) -> Result<()> {
        self.reset();
        check_positions(&positions, self.shape.max_depth, self.capacity)?;
        let (heads, head_dim) = (self.shape.num_kv_heads, self.shape.head_dim);
        let result = (|| {
            for (layer, layer_rows) in self.cpu_rows_mut()?.iter_mut().enumerate() {
                for (d, depth_positions) in positions.iter().enumerate() {
                    let DepthRows { keys, values } = &mut layer_rows[d];
                    let vectors = depth_positions.len() * heads;
                    let mut parts = keys.byte_parts_mut(vectors, head_dim);
                    parts.extend(values.byte_parts_mut(vectors, head_dim));
                    fill(layer, d + 1, &mut parts)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.positions = positions;
                Ok(())
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }
}

/// The invariants [`KvCache`] keeps, for positions read from a file.
fn check_positions(positions: &[Vec<u32>], max_depth: usize, capacity: usize) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument(what));
    if positions.len() != max_depth {
        return bad(format!(
            "{} depths, the model has {max_depth}",
            positions.len()
        ));
    }
    let n = positions[0].len();
    if n > capacity {
        return bad(format!("{n} positions, the context holds {capacity}"));
    }
    if positions[0]
        .iter()
        .enumerate()
        .any(|(i, &p)| p as usize != i)
    {
        return bad("depth-1 positions are not 0, 1, 2, ...".into());
    }
    for d in 1..max_depth {
        let (below, here) = (&positions[d - 1], &positions[d]);
        if here.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("depth-{} positions are not ascending", d + 1));
        }
        if let Some(p) = here.iter().find(|p| below.binary_search(p).is_err()) {
            return bad(format!(
                "position {p} reaches depth {} without depth {d}",
                d + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::{KvPrecision, KvShape};

    fn filled(precision: KvPrecision) -> KvCache {
        let shape = KvShape {
            num_layers: 2,
            num_kv_heads: 2,
            head_dim: 4,
            max_depth: 2,
        };
        let mut cache = KvCache::new(shape, 16, precision);
        for (depth, positions) in [(1, vec![0u32, 1, 2, 3]), (2, vec![1, 3])] {
            cache.begin_pass(depth, &positions).unwrap();
            for layer in 0..2 {
                let rows: Vec<f32> = (0..positions.len() * 8)
                    .map(|i| (i as f32 * 0.37 + layer as f32 + depth as f32).sin())
                    .collect();
                let values: Vec<f32> = rows.iter().map(|x| -2.0 * x).collect();
                cache.append(layer, depth, &rows, &values).unwrap();
            }
        }
        cache
    }

    #[test]
    fn bytes_round_trip_in_every_precision() {
        for precision in [KvPrecision::F32, KvPrecision::F16, KvPrecision::Q8] {
            let cache = filled(precision);
            let mut copy = KvCache::new(cache.shape(), 16, precision);
            let positions = vec![cache.positions(1).to_vec(), cache.positions(2).to_vec()];
            copy.restore(positions, |layer, depth, parts| {
                let source = cache.entry_bytes(layer, depth)?;
                assert_eq!(
                    source.iter().map(|p| p.len()).sum::<usize>(),
                    cache.entry_byte_len(cache.depth_len(depth))
                );
                for (dst, src) in parts.iter_mut().zip(source) {
                    dst.copy_from_slice(src);
                }
                Ok(())
            })
            .unwrap();
            for layer in 0..2 {
                for depth in 1..=2 {
                    assert_eq!(
                        copy.entry_bytes(layer, depth).unwrap(),
                        cache.entry_bytes(layer, depth).unwrap()
                    );
                }
            }
            assert_eq!((copy.len(), copy.positions(2)), (4, &[1u32, 3][..]));
            assert_eq!(copy.bytes(), cache.bytes());
        }
    }

    #[test]
    fn inconsistent_positions_are_refused_and_leave_the_cache_empty() {
        let mut cache = filled(KvPrecision::F16);
        for positions in [
            vec![vec![0, 1, 2]],
            vec![vec![0, 2], vec![]],
            vec![vec![0, 1, 2], vec![2, 1]],
            vec![vec![0, 1], vec![3]],
            vec![(0..17).collect(), vec![]],
        ] {
            assert!(
                cache.restore(positions.clone(), |_, _, _| Ok(())).is_err(),
                "{positions:?}"
            );
            assert!(cache.is_empty() && cache.bytes() == 0);
        }
    }
}
