//! The decider MLP on the GPU (see `crate::decider` for the network):
//! inputs are the pass's captured hidden states and the top-k values of the
//! running logits, both already on the GPU; only the final logit of each
//! token comes back.

use super::chunk::Buffers;
use super::weights::{values, vector, GpuMatrix, Out, Rows};
use crate::decider::{ClassifierBlock, Decider, Linear};
use crate::error::Result;
use crate::kernels::gpu::{grid, params, GpuContext, Kernel, Recorder};

/// PyTorch's LayerNorm default, used by every LayerNorm of the decider.
const LAYER_NORM_EPS: f32 = 1e-5;

/// `x W^T + b`.
struct Dense {
    weight: GpuMatrix,
    bias: wgpu::Buffer,
}

impl Dense {
    fn upload(context: &GpuContext, label: &str, linear: &Linear) -> Result<Self> {
        Ok(Dense {
            weight: GpuMatrix::upload(
                context,
                label,
                &crate::weights::Matrix::Dense(linear.weight.clone()),
            )?,
            bias: vector(context, label, &values(&linear.bias)?)?,
        })
    }

    fn out_dim(&self) -> usize {
        self.weight.rows()
    }

    /// `y (+)= x W^T + b` for `x.count` rows.
    fn forward(
        &self,
        rec: &mut Recorder,
        x: Rows,
        y: Out,
        accumulate: bool,
        no_map: &wgpu::Buffer,
    ) {
        self.weight.matmul(rec, x, y, 1.0, accumulate, no_map);
        let cols = self.out_dim();
        rec.dispatch(
            Kernel::AddBias,
            params![x.count, cols, y.offset, y.stride],
            &[y.buffer, &self.bias],
            grid((x.count * cols).div_ceil(64)),
        );
    }
}

/// A LayerNorm's weight then bias, in one buffer.
fn layer_norm(
    context: &GpuContext,
    label: &str,
    norm: &candle_nn::LayerNorm,
) -> Result<wgpu::Buffer> {
    let mut wb = values(norm.weight())?;
    match norm.bias() {
        Some(bias) => wb.extend(values(bias)?),
        None => wb.extend(std::iter::repeat_n(0.0, wb.len())),
    }
    vector(context, label, &wb)
}

struct Block {
    layer_norm: wgpu::Buffer,
    in_dim: usize,
    mlp_in: Dense,
    mlp_out: Dense,
    dim_change: Option<Dense>,
}

pub(crate) struct GpuDecider {
    topk: usize,
    /// Hidden-state indices read, each `hidden` wide.
    layers: Vec<usize>,
    hidden: usize,
    layer_norm_hidden_states: Option<wgpu::Buffer>,
    logits_projection: Dense,
    combined_projection: Dense,
    input_projection: Dense,
    blocks: Vec<Block>,
    output_norm: wgpu::Buffer,
    output_width: usize,
    output_layer: Dense,
    /// Widest intermediate row (for the workspace).
    widest: usize,
}

impl GpuDecider {
    pub fn upload(context: &GpuContext, decider: &Decider) -> Result<Self> {
        let cfg = &decider.cfg;
        let dense = |name: &str, l: &Linear| Dense::upload(context, &format!("decider.{name}"), l);
        let blocks = decider
            .blocks
            .iter()
            .enumerate()
            .map(|(j, block): (usize, &ClassifierBlock)| {
                Ok(Block {
                    layer_norm: layer_norm(context, "decider block norm", &block.layer_norm)?,
                    in_dim: block.mlp_in.weight.dim(1)?,
                    mlp_in: dense(&format!("blocks.{j}.mlp.0"), &block.mlp_in)?,
                    mlp_out: dense(&format!("blocks.{j}.mlp.3"), &block.mlp_out)?,
                    dim_change: block
                        .dim_change
                        .as_ref()
                        .map(|l| dense(&format!("blocks.{j}.dim_change"), l))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let widest = blocks
            .iter()
            .map(|b| b.mlp_in.out_dim().max(b.mlp_out.out_dim()))
            .chain(cfg.hidden_dims.iter().copied())
            .max()
            .unwrap_or(1);
        Ok(GpuDecider {
            topk: cfg.topk,
            layers: cfg.hidden_states_layer_nums.clone(),
            hidden: cfg.hidden_states_size,
            layer_norm_hidden_states: decider
                .layer_norm_hidden_states
                .as_ref()
                .map(|n| layer_norm(context, "decider hidden norm", n))
                .transpose()?,
            logits_projection: dense("logits_projection", &decider.logits_projection)?,
            combined_projection: dense("combined_projection", &decider.combined_projection)?,
            input_projection: dense("input_projection", &decider.input_projection)?,
            blocks,
            output_norm: layer_norm(context, "decider output norm", &decider.output_norm)?,
            output_width: decider.output_layer.weight.dim(1)?,
            output_layer: dense("output_layer.1", &decider.output_layer)?,
            widest,
        })
    }

    pub fn topk(&self) -> usize {
        self.topk
    }

    pub fn capture_indices(&self) -> &[usize] {
        &self.layers
    }

    /// Width of the captured hidden features.
    fn features(&self) -> usize {
        self.layers.len() * self.hidden
    }

    /// Width of the combined input (features, then the projected logits).
    pub fn input_width(&self) -> usize {
        self.features() + self.hidden
    }

    pub fn widest(&self) -> usize {
        self.widest
    }

    /// Where a pass captures the hidden states: raw features to be
    /// normalized, or straight into the combined input.
    pub fn capture_target<'a>(&self, b: &'a Buffers) -> (&'a wgpu::Buffer, usize) {
        match self.layer_norm_hidden_states {
            Some(_) => (&b.features, self.features()),
            None => (&b.decider_in, self.input_width()),
        }
    }

    fn layer_norm(&self, rec: &mut Recorder, x: Rows, wb: &wgpu::Buffer, y: Out, width: usize) {
        rec.dispatch(
            Kernel::LayerNorm,
            params![
                x.count,
                width,
                x.offset,
                x.stride,
                y.offset,
                y.stride,
                LAYER_NORM_EPS
            ],
            &[x.buffer, wb, y.buffer],
            grid(x.count),
        );
    }

    /// The decider's logit for `n` tokens into `b.decider_logit`, from the
    /// captured hidden states and the top-k values at `values_base` of
    /// `b.top` (`top_len` per row).
    pub fn record(
        &self,
        rec: &mut Recorder,
        b: &Buffers,
        n: usize,
        top_len: usize,
        values_base: usize,
        no_map: &wgpu::Buffer,
    ) {
        let (features, width) = (self.features(), self.input_width());
        // 1. Inputs: hidden features (LayerNorm'd when configured) and the
        //    top-k logit values (softmaxed when configured).
        if let Some(norm) = &self.layer_norm_hidden_states {
            self.layer_norm(
                rec,
                Rows::packed(&b.features, features, n),
                norm,
                Out::packed(&b.decider_in, width),
                features,
            );
        }
        rec.dispatch(
            Kernel::CopyRows,
            params![n, self.topk, values_base, top_len, 0usize, self.topk],
            &[&b.top, &b.decider_top],
            grid((n * self.topk).div_ceil(64)),
        );
        if self.layer_norm_hidden_states.is_some() {
            rec.dispatch(
                Kernel::SoftmaxRows,
                params![n, self.topk, 0usize, self.topk],
                &[&b.decider_top],
                grid(n),
            );
        }
        // 2. Project the logits next to the features, combine.
        self.logits_projection.forward(
            rec,
            Rows::packed(&b.decider_top, self.topk, n),
            Out {
                buffer: &b.decider_in,
                offset: features,
                stride: width,
                map: None,
            },
            false,
            no_map,
        );
        let first = self.combined_projection.out_dim();
        self.combined_projection.forward(
            rec,
            Rows::packed(&b.decider_in, width, n),
            Out::packed(&b.decider_a, first),
            false,
            no_map,
        );
        self.input_projection.forward(
            rec,
            Rows::packed(&b.decider_a, first, n),
            Out::packed(&b.decider_b, first),
            false,
            no_map,
        );
        // 3. The blocks: z = dim_change(z) + mlp.3(GELU(mlp.0(layer_norm(z)))).
        let (mut z, mut spare) = (&b.decider_b, &b.decider_a);
        for block in &self.blocks {
            let (in_dim, inner, out_dim) = (
                block.in_dim,
                block.mlp_in.out_dim(),
                block.mlp_out.out_dim(),
            );
            self.layer_norm(
                rec,
                Rows::packed(z, in_dim, n),
                &block.layer_norm,
                Out::packed(&b.decider_norm, in_dim),
                in_dim,
            );
            block.mlp_in.forward(
                rec,
                Rows::packed(&b.decider_norm, in_dim, n),
                Out::packed(&b.decider_inner, inner),
                false,
                no_map,
            );
            rec.dispatch(
                Kernel::Gelu,
                params![n, inner, 0usize, inner],
                &[&b.decider_inner],
                grid((n * inner).div_ceil(64)),
            );
            // The residual is z itself, or its projection to the new width.
            if let Some(dim_change) = &block.dim_change {
                dim_change.forward(
                    rec,
                    Rows::packed(z, in_dim, n),
                    Out::packed(spare, out_dim),
                    false,
                    no_map,
                );
                std::mem::swap(&mut z, &mut spare);
            }
            block.mlp_out.forward(
                rec,
                Rows::packed(&b.decider_inner, inner, n),
                Out::packed(z, out_dim),
                true,
                no_map,
            );
        }
        // 4. LayerNorm, then the linear layer to one logit per token.
        let last = self.output_width;
        self.layer_norm(
            rec,
            Rows::packed(z, last, n),
            &self.output_norm,
            Out::packed(&b.decider_norm, last),
            last,
        );
        self.output_layer.forward(
            rec,
            Rows::packed(&b.decider_norm, last, n),
            Out::packed(&b.decider_logit, 1),
            false,
            no_map,
        );
    }
}
