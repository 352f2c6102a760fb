//! Weight matrices on the GPU, in the blocks they are stored in (GGUF's
//! quantized types, f16, bf16, or f32), dequantized by the kernels. A matrix
//! larger than one storage binding is split into bands of whole rows, each
//! its own buffer and dispatch.

use crate::error::{Error, GpuProblem, Result};
use crate::kernels::dense::with_f32_values;
use crate::kernels::gpu::{grid, params, GpuContext, Kernel, Recorder, WeightType};
use crate::weights::Matrix;

/// Up to this many input rows use the one-pass product (`matmul_vec`).
const FEW_ROWS: usize = 8;
/// A product's workgroups take several tiles each once there are this many
/// (a phone GPU is full long before; fewer, longer workgroups cost less to
/// launch, which Mesa's software driver feels most).
const MIN_WORKGROUPS: usize = 256;

struct Band {
    buffer: wgpu::Buffer,
    first_row: usize,
    rows: usize,
}

pub(crate) struct GpuMatrix {
    ty: WeightType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    bands: Vec<Band>,
}

/// Input rows of a product: `count` rows of a buffer, `stride` floats apart
/// from `offset`.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub stride: usize,
    pub count: usize,
}

impl<'a> Rows<'a> {
    /// `count` packed rows of `width` floats from the start of `buffer`.
    pub fn packed(buffer: &'a wgpu::Buffer, width: usize, count: usize) -> Self {
        Rows {
            buffer,
            offset: 0,
            stride: width,
            count,
        }
    }
}

/// Where a product goes: rows `stride` floats apart from `offset`; with
/// `map`, input row r lands on output row `map[r]`.
#[derive(Clone, Copy)]
pub(crate) struct Out<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub stride: usize,
    pub map: Option<&'a wgpu::Buffer>,
}

impl<'a> Out<'a> {
    pub fn packed(buffer: &'a wgpu::Buffer, width: usize) -> Self {
        Out {
            buffer,
            offset: 0,
            stride: width,
            map: None,
        }
    }
}

impl GpuMatrix {
    /// Uploads a model matrix: a mapped GGUF matrix as its blocks (its
    /// pages then released, so memory holds it once), a heap one as f32.
    pub fn upload(context: &GpuContext, label: &str, matrix: &Matrix) -> Result<Self> {
        match matrix {
            Matrix::Mapped(m) => {
                let ty = WeightType::of(m.dtype()).ok_or_else(|| {
                    GpuProblem::Unsupported(format!(
                        "`{label}` is stored as {:?}, which has no GPU kernel",
                        m.dtype()
                    ))
                })?;
                let uploaded = Self::from_bytes(context, label, ty, m.bytes(), m.rows(), m.cols());
                m.release_pages();
                uploaded
            }
            Matrix::Dense(t) => {
                let (rows, cols) = t.dims2()?;
                with_f32_values(t, |values| {
                    Self::from_f32(context, label, values, rows, cols)
                })
            }
        }
    }

    pub fn from_f32(
        context: &GpuContext,
        label: &str,
        values: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(context, label, WeightType::F32, &bytes, rows, cols)
    }

    fn from_bytes(
        context: &GpuContext,
        label: &str,
        ty: WeightType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        if rows == 0 || !cols.is_multiple_of(ty.block_values()) || !bytes.len().is_multiple_of(rows)
        {
            return Err(Error::InvalidArgument(format!(
                "`{label}`: {} bytes are not {rows} rows of {cols} {ty:?} values",
                bytes.len()
            )));
        }
        let row_bytes = bytes.len() / rows;
        // Room for a band's padding to whole words.
        let rows_per_band = (context.max_binding.saturating_sub(3) / row_bytes as u64) as usize;
        if rows_per_band == 0 {
            return Err(GpuProblem::OverLimits {
                what: format!("a row of `{label}`"),
                needed: row_bytes as u64,
                limit: context.max_binding,
            }
            .into());
        }
        let bands = (0..rows)
            .step_by(rows_per_band)
            .map(|first_row| {
                let band_rows = rows_per_band.min(rows - first_row);
                let range = first_row * row_bytes..(first_row + band_rows) * row_bytes;
                Ok(Band {
                    buffer: context.upload(label, &bytes[range])?,
                    first_row,
                    rows: band_rows,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuMatrix {
            ty,
            rows,
            cols,
            row_bytes,
            bands,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `y = scale * x W^T`, added to `y` when `accumulate`. `no_map` is a
    /// placeholder buffer bound where `y.map` is None.
    pub fn matmul(
        &self,
        rec: &mut Recorder,
        x: Rows,
        y: Out,
        scale: f32,
        accumulate: bool,
        no_map: &wgpu::Buffer,
    ) {
        if x.count == 0 {
            return;
        }
        for band in &self.bands {
            let few = x.count <= FEW_ROWS;
            let kernel = if few {
                Kernel::MatmulVec(self.ty)
            } else {
                Kernel::MatmulTiled(self.ty)
            };
            // Threads per weight row of the few-rows kernel: about one per
            // group of 32 values, up to 16.
            let lanes = self.cols.div_ceil(32).next_power_of_two().min(16);
            let (tiles, rows_of_tiles) = if few {
                (band.rows.div_ceil(64 / lanes), 1)
            } else {
                (band.rows.div_ceil(64), x.count.div_ceil(64))
            };
            let repeat = (tiles * rows_of_tiles / MIN_WORKGROUPS).clamp(1, tiles);
            let workgroups = if few {
                grid(tiles.div_ceil(repeat))
            } else {
                [tiles.div_ceil(repeat) as u32, rows_of_tiles as u32, 1]
            };
            rec.dispatch(
                kernel,
                params![
                    x.count,
                    band.rows,
                    self.cols,
                    self.row_bytes,
                    x.offset,
                    x.stride,
                    y.offset,
                    y.stride,
                    band.first_row,
                    accumulate,
                    scale,
                    y.map.is_some(),
                    lanes,
                    repeat,
                ],
                &[&band.buffer, x.buffer, y.buffer, y.map.unwrap_or(no_map)],
                workgroups,
            );
        }
    }

    /// `out[i] = row ids[i]` for the `n` ids in `ids` (`out` packed, `cols` wide).
    pub fn embed_rows(&self, rec: &mut Recorder, ids: &wgpu::Buffer, n: usize, out: &wgpu::Buffer) {
        for band in &self.bands {
            rec.dispatch(
                Kernel::EmbedRows(self.ty),
                params![
                    n,
                    self.cols,
                    self.row_bytes,
                    band.first_row,
                    band.rows,
                    self.cols
                ],
                &[&band.buffer, ids, out],
                [self.cols.div_ceil(64) as u32, n as u32, 1],
            );
        }
    }

    /// Soft embeddings of `n` rows into `out` (see `soft_embed.wgsl`): the
    /// top-k buffer `top` holds `top_k` ids per row, then values from
    /// `values_base`; `hard[i]` is the top-k row of output row i.
    #[allow(clippy::too_many_arguments)]
    pub fn soft_embed(
        &self,
        rec: &mut Recorder,
        top: &wgpu::Buffer,
        hard: &wgpu::Buffer,
        n: usize,
        soft_k: usize,
        top_k: usize,
        values_base: usize,
        out: &wgpu::Buffer,
    ) {
        for (b, band) in self.bands.iter().enumerate() {
            rec.dispatch(
                Kernel::SoftEmbed(self.ty),
                params![
                    n,
                    self.cols,
                    self.row_bytes,
                    band.first_row,
                    band.rows,
                    soft_k,
                    top_k,
                    values_base,
                    b > 0,
                ],
                &[&band.buffer, top, hard, out],
                [self.cols.div_ceil(64) as u32, n as u32, 1],
            );
        }
    }
}

/// A small f32 vector (a norm's weight, a bias) as a storage buffer.
pub(crate) fn vector(context: &GpuContext, label: &str, values: &[f32]) -> Result<wgpu::Buffer> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    context.upload(label, &bytes)
}

/// A tensor's values as f32 (norm weights, biases: small).
pub(crate) fn values(t: &candle_core::Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::device::GpuOptions;
    use crate::kernels::gpu::{Pipelines, Scratch};
    use crate::kernels::test_values;

    fn floats(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// Every weight type's products (few rows and many, over several
    /// bands, into strided and mapped outputs, scaled and accumulated) and
    /// embedding rows equal the CPU's dequantized weights in f64.
    #[test]
    fn products_and_rows_match_the_dequantized_weights() {
        let mut context = GpuContext::open(&GpuOptions::default()).unwrap();
        let kernels: Vec<Kernel> = WeightType::ALL
            .iter()
            .flat_map(|&t| {
                [
                    Kernel::MatmulVec(t),
                    Kernel::MatmulTiled(t),
                    Kernel::EmbedRows(t),
                ]
            })
            .collect();
        let pipelines = Pipelines::build(&context, &kernels, false).unwrap();
        let cases = [
            (GgmlDType::F32, 100),
            (GgmlDType::F16, 100),
            (GgmlDType::BF16, 100),
            (GgmlDType::Q8_0, 96),
            (GgmlDType::Q4_0, 96),
            (GgmlDType::Q5_0, 96),
            (GgmlDType::Q4K, 512),
            (GgmlDType::Q6K, 512),
        ];
        let rows = 70;
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let mut scratch = Scratch::default();
        for (dtype, cols) in cases {
            let values: Vec<f32> = test_values(rows * cols, 7)
                .iter()
                .map(|v| v * 3.0)
                .collect();
            let (bytes, weights) = if dtype == GgmlDType::F32 {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (bytes, values.clone())
            } else {
                let q = QTensor::quantize(
                    &Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu).unwrap(),
                    dtype,
                )
                .unwrap();
                let weights = q
                    .dequantize(&Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                (q.data().unwrap().to_vec(), weights)
            };
            // Bands of 25 rows: three buffers.
            context.max_binding = (bytes.len() / rows * 25) as u64;
            let ty = WeightType::of(dtype).unwrap();
            let matrix = GpuMatrix::from_bytes(&context, "test", ty, &bytes, rows, cols).unwrap();
            assert_eq!(matrix.bands.len(), 3, "{dtype:?}");
            context.max_binding = u64::MAX;
            for m in [1, 3, 8, 9, 70] {
                // x: m rows at offset 5, stride cols + 3; y: rows at offset 2,
                // stride rows + 1, written through a reversed row map on top
                // of ones (accumulated), scaled by 0.5.
                let x_stride = cols + 3;
                let x: Vec<f32> = test_values(5 + m * x_stride, 11);
                let y_stride = rows + 1;
                let map: Vec<u32> = (0..m as u32).rev().collect();
                let x_buffer = context
                    .upload(
                        "x",
                        &x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
                    )
                    .unwrap();
                let y_buffer = context
                    .upload(
                        "y",
                        &vec![1f32; 2 + m * y_stride]
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect::<Vec<_>>(),
                    )
                    .unwrap();
                let map_buffer = context
                    .upload(
                        "map",
                        &map.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
                    )
                    .unwrap();
                let no_map = context.buffer("no map", 4, usage).unwrap();
                let mut rec = Recorder::new(&context, &pipelines);
                matrix.matmul(
                    &mut rec,
                    Rows {
                        buffer: &x_buffer,
                        offset: 5,
                        stride: x_stride,
                        count: m,
                    },
                    Out {
                        buffer: &y_buffer,
                        offset: 2,
                        stride: y_stride,
                        map: Some(&map_buffer),
                    },
                    0.5,
                    true,
                    &no_map,
                );
                let read = rec
                    .submit(
                        &mut scratch,
                        &[(&y_buffer, 0, 4 * (2 + m * y_stride) as u64)],
                    )
                    .unwrap();
                let y = floats(&read[0]);
                for r in 0..m {
                    for j in 0..rows {
                        let dot: f64 = (0..cols)
                            .map(|c| x[5 + r * x_stride + c] as f64 * weights[j * cols + c] as f64)
                            .sum();
                        let want = 1.0 + 0.5 * dot;
                        let got = y[2 + map[r] as usize * y_stride + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "{dtype:?} m {m} [{r}][{j}]: {got} vs {want}"
                        );
                    }
                }
            }
            // Embedding rows.
            let ids: Vec<u32> = vec![0, 69, 24, 25, 50, 3];
            let ids_buffer = context
                .upload(
                    "ids",
                    &ids.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
                )
                .unwrap();
            let out = context
                .buffer("rows", (4 * ids.len() * cols) as u64, usage)
                .unwrap();
            let mut rec = Recorder::new(&context, &pipelines);
            matrix.embed_rows(&mut rec, &ids_buffer, ids.len(), &out);
            let read = rec
                .submit(&mut scratch, &[(&out, 0, (4 * ids.len() * cols) as u64)])
                .unwrap();
            let got = floats(&read[0]);
            for (i, &id) in ids.iter().enumerate() {
                let want = &weights[id as usize * cols..(id as usize + 1) * cols];
                assert_eq!(&got[i * cols..(i + 1) * cols], want, "{dtype:?} row {id}");
            }
        }
    }
}
