//! The k largest entries of logits rows on the GPU, in the CPU's order
//! (value by `total_cmp`, ties to the lower id): radix select over 64-bit
//! keys (value, then id), at most 8 passes of 8-bit digits, then the k
//! entries at or above the k-th key gathered and sorted (see
//! `shaders/topk_common.wgsl`). Reads a row about 4 times (a pass per
//! digit until one digit's bin holds exactly the entries still needed).

use crate::kernels::gpu::{grid, params, Kernel, Recorder, TOPK_STATE_WORDS};

/// Columns per workgroup of the passes over a row.
const BLOCK: usize = 4096;

pub(crate) struct TopKBuffers<'a> {
    /// Rows of `row_stride` floats.
    pub logits: &'a wgpu::Buffer,
    /// Which logits row each of the `rows` rows is (u32).
    pub rows: &'a wgpu::Buffer,
    /// `rows * TOPK_STATE_WORDS` words.
    pub state: &'a wgpu::Buffer,
    /// `2 * rows * k` words.
    pub gathered: &'a wgpu::Buffer,
    /// Ids `[rows][k]`, then values from `rows * k`.
    pub top: &'a wgpu::Buffer,
}

/// Records the top `k` (<= `MAX_TOPK`) of columns `..cols` of `rows` rows.
pub(crate) fn record(
    rec: &mut Recorder,
    b: &TopKBuffers,
    rows: usize,
    k: usize,
    cols: usize,
    row_stride: usize,
) {
    if rows == 0 || k == 0 {
        return;
    }
    let blocks = cols.div_ceil(BLOCK);
    rec.dispatch(
        Kernel::Fill,
        params![rows * TOPK_STATE_WORDS, 0usize, 0u32],
        &[b.state],
        grid((rows * TOPK_STATE_WORDS).div_ceil(64)),
    );
    for _ in 0..8 {
        rec.dispatch(
            Kernel::TopkHistogram,
            params![rows, cols, row_stride, BLOCK, blocks],
            &[b.logits, b.rows, b.state],
            grid(rows * blocks),
        );
        rec.dispatch(Kernel::TopkSelect, params![rows, k], &[b.state], grid(rows));
    }
    rec.dispatch(
        Kernel::TopkGather,
        params![rows, cols, row_stride, BLOCK, blocks, k],
        &[b.logits, b.rows, b.state, b.gathered],
        grid(rows * blocks),
    );
    rec.dispatch(
        Kernel::TopkSort,
        params![rows, k, k.next_power_of_two(), rows * k],
        &[b.gathered, b.top],
        grid(rows),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::GpuOptions;
    use crate::kernels::gpu::{GpuContext, Pipelines, Scratch};
    use crate::kernels::test_values;
    use crate::logits::top_k;

    fn bytes<T: Copy>(values: &[T], to: fn(T) -> [u8; 4]) -> Vec<u8> {
        values.iter().flat_map(|&v| to(v)).collect()
    }

    /// Rows with ties, repeated values, negative zeros and infinities,
    /// wider than a block, for several k and column limits: exactly the
    /// CPU's top-k (ids and values, in order).
    #[test]
    fn top_k_equals_the_cpu_order() {
        let context = GpuContext::open(&GpuOptions::default()).unwrap();
        let kernels = [
            Kernel::Fill,
            Kernel::TopkHistogram,
            Kernel::TopkSelect,
            Kernel::TopkGather,
            Kernel::TopkSort,
        ];
        let pipelines = Pipelines::build(&context, &kernels, false).unwrap();
        let mut scratch = Scratch::default();
        let width = 9000;
        let mut rows: Vec<Vec<f32>> = Vec::new();
        // Random values; values quantized to few levels (many ties);
        // specials; all equal.
        rows.push(test_values(width, 1));
        rows.push(
            test_values(width, 2)
                .iter()
                .map(|v| (v * 8.0).round())
                .collect(),
        );
        let mut special = test_values(width, 3);
        special[17] = f32::INFINITY;
        special[4000] = f32::NEG_INFINITY;
        special[5] = -0.0;
        special[6] = 0.0;
        special[8999] = 0.5;
        rows.push(special);
        rows.push(vec![1.25; width]);
        let logits: Vec<f32> = rows.concat();
        // The kernels read rows through an index list: reversed here.
        let order: Vec<u32> = (0..rows.len() as u32).rev().collect();
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        for (k, cols) in [
            (1, width),
            (20, width),
            (100, width),
            (1024, width),
            (100, 4096),
            (7, 10),
        ] {
            let n = rows.len();
            let logits_buffer = context
                .upload("logits", &bytes(&logits, f32::to_le_bytes))
                .unwrap();
            let rows_buffer = context
                .upload("rows", &bytes(&order, u32::to_le_bytes))
                .unwrap();
            let state = context
                .buffer("state", (4 * n * TOPK_STATE_WORDS) as u64, usage)
                .unwrap();
            let gathered = context
                .buffer("gathered", (8 * n * k) as u64, usage)
                .unwrap();
            let top = context.buffer("top", (8 * n * k) as u64, usage).unwrap();
            let buffers = TopKBuffers {
                logits: &logits_buffer,
                rows: &rows_buffer,
                state: &state,
                gathered: &gathered,
                top: &top,
            };
            let mut rec = Recorder::new(&context, &pipelines);
            record(&mut rec, &buffers, n, k, cols, width);
            let read = rec
                .submit(&mut scratch, &[(&top, 0, (8 * n * k) as u64)])
                .unwrap();
            let words: Vec<u32> = read[0]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            for (r, &row) in order.iter().enumerate() {
                let want = top_k(&rows[row as usize][..cols], k);
                let got: Vec<(u32, f32)> = (0..k)
                    .map(|i| (words[r * k + i], f32::from_bits(words[n * k + r * k + i])))
                    .collect();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        g.0 == w.0 && g.1.to_bits() == w.1.to_bits(),
                        "k {k} cols {cols} row {row}: {g:?} vs {w:?}"
                    );
                }
            }
        }
    }
}
