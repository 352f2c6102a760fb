//! A TaH model on the GPU: the whole forward (embedding and soft embedding,
//! RMSNorm, projections with LoRA at depth >= 2, q/k norms, RoPE,
//! duo-causal attention over a two-depth KV cache on the GPU, SwiGLU, the
//! LM head, top-k, the decider) runs in WGSL kernels
//! ([`crate::kernels::gpu`]); per pass only the decider's probabilities come
//! back, per decode step only what sampling reads.
//!
//! - [`weights`]: matrices in their stored blocks, split into bands over
//!   the binding limit;
//! - [`forward`]: one pass through the network, reading like `model.rs`;
//! - [`decider`]: the decider MLP;
//! - [`kv`]: the KV cache's vectors in GPU buffer segments;
//! - [`top_k`]: the k largest running logits of rows (radix select);
//! - [`chunk`]: the GPU side of the TaH loop ([`crate::iteration`]).

mod chunk;
mod decider;
mod forward;
mod kv;
mod top_k;
mod weights;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use chunk::GpuChunk;

use crate::config::Qwen3Config;
use crate::decider::Decider;
use crate::device::GpuOptions;
use crate::error::{GpuProblem, Result};
use crate::kernels::gpu::{GpuContext, Kernel, Pipelines, Scratch, WeightType, MAX_TOPK};
use crate::kv_cache::{KvCache, KvPrecision, KvShape};
use crate::model::{Linear, Model};
use crate::weights::Matrix;
use decider::GpuDecider;
use kv::GpuKv;
use weights::{vector, GpuMatrix};

/// A chunk's running logits (`rows x vocab` f32) live on the GPU; longer
/// chunks run as several of at most this many bytes of them.
const LOGITS_BUDGET: usize = 64 << 20;
/// And at most this many rows whatever the vocabulary.
const MAX_CHUNK_ROWS: usize = 256;
/// The attention kernel keeps a query head in workgroup memory.
const MAX_HEAD_DIM: usize = 512;

/// Distinguishes models, so a cache is only used with the model it was made for.
static NEXT_MODEL_ID: AtomicU64 = AtomicU64::new(1);

/// PEFT LoRA pair on the GPU: `scaling * B (A x)`.
struct GpuLora {
    a: GpuMatrix,
    b: GpuMatrix,
    scaling: f32,
}

/// A bias-free linear layer that adds its LoRA adapter at depth >= 2.
struct GpuLinear {
    weight: GpuMatrix,
    lora: Option<GpuLora>,
}

struct GpuLayer {
    q_proj: GpuLinear,
    k_proj: GpuLinear,
    v_proj: GpuLinear,
    o_proj: GpuLinear,
    q_norm: wgpu::Buffer,
    k_norm: wgpu::Buffer,
    gate_proj: GpuLinear,
    up_proj: GpuLinear,
    down_proj: GpuLinear,
    input_layernorm: wgpu::Buffer,
    post_attention_layernorm: wgpu::Buffer,
}

pub(crate) struct GpuModel {
    context: GpuContext,
    pipelines: Pipelines,
    id: u64,
    cfg: Qwen3Config,
    max_iter: usize,
    soft_topk: usize,
    precision: KvPrecision,
    embed_tokens: GpuMatrix,
    /// None: tied to the embedding.
    lm_head: Option<GpuMatrix>,
    layers: Vec<GpuLayer>,
    norm: wgpu::Buffer,
    /// RoPE's frequencies, as the CPU path computes them.
    inv_freq: Vec<f32>,
    decider: Option<GpuDecider>,
    /// LoRA rank (0 without an adapter).
    lora_rank: usize,
    /// Bound where a product has no output row map.
    no_map: wgpu::Buffer,
    kv_segment_entries: Option<usize>,
}

/// The weight type of a model matrix, or why the GPU cannot run it.
fn weight_type(matrix: &Matrix) -> Result<WeightType> {
    match matrix {
        Matrix::Dense(_) => Ok(WeightType::F32),
        Matrix::Mapped(m) => WeightType::of(m.dtype()).ok_or_else(|| {
            GpuProblem::Unsupported(format!("weights stored as {:?}", m.dtype())).into()
        }),
    }
}

impl GpuModel {
    /// Opens the GPU, builds the kernels the model needs and uploads its
    /// weights (mapped GGUF pages are released as they go up).
    pub fn upload(
        net: &Model,
        decider: Option<&Decider>,
        max_iter: usize,
        soft_topk: usize,
        precision: KvPrecision,
        options: &GpuOptions,
    ) -> Result<Self> {
        let cfg = net.config().clone();
        if cfg.head_dim > MAX_HEAD_DIM {
            return Err(GpuProblem::Unsupported(format!(
                "head_dim {} is over the attention kernel's {MAX_HEAD_DIM}",
                cfg.head_dim
            ))
            .into());
        }
        let top_len = decider.map_or(0, |d| d.topk()).max(soft_topk);
        if top_len > MAX_TOPK {
            return Err(GpuProblem::Unsupported(format!(
                "a top-k of {top_len} is over the GPU kernels' {MAX_TOPK}"
            ))
            .into());
        }
        let context = GpuContext::open(options)?;
        let logits_row = 4 * cfg.vocab_size as u64;
        if logits_row > context.max_binding {
            return Err(GpuProblem::OverLimits {
                what: "a row of logits".into(),
                needed: logits_row,
                limit: context.max_binding,
            }
            .into());
        }
        // 1. Kernels first: a refused shader fails before any weight moves.
        let mut types = vec![
            WeightType::F32,
            weight_type(&net.embed_tokens.as_lm_head())?,
        ];
        for layer in &net.layers {
            for linear in layer_linears(layer) {
                types.push(weight_type(&linear.weight)?);
            }
        }
        if !cfg.tie_word_embeddings {
            types.push(weight_type(net.lm_head())?);
        }
        types.sort_by_key(|t| *t as u8);
        types.dedup();
        let pipelines = Pipelines::build(
            &context,
            &Kernel::needed(&types, precision),
            options.test_hooks.broken_shader,
        )?;

        // 2. Weights.
        let embed_tokens =
            GpuMatrix::upload(&context, "token_embd", &net.embed_tokens.as_lm_head())?;
        let lm_head = match cfg.tie_word_embeddings {
            true => None,
            false => Some(GpuMatrix::upload(&context, "output", net.lm_head())?),
        };
        let mut lora_rank = 0;
        let layers = net
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let mut linear = |name: &str, l: &Linear| -> Result<GpuLinear> {
                    let label = format!("blk.{i}.{name}");
                    let lora = match &l.lora {
                        Some(lora) => {
                            let a = GpuMatrix::upload(&context, &label, &lora.a)?;
                            lora_rank = lora_rank.max(a.rows());
                            Some(GpuLora {
                                b: GpuMatrix::upload(&context, &label, &lora.b)?,
                                a,
                                scaling: lora.scaling as f32,
                            })
                        }
                        None => None,
                    };
                    Ok(GpuLinear {
                        weight: GpuMatrix::upload(&context, &label, &l.weight)?,
                        lora,
                    })
                };
                let attn = &layer.self_attn;
                let norm = |name: &str, weight: &[f32]| {
                    vector(&context, &format!("blk.{i}.{name}"), weight)
                };
                Ok(GpuLayer {
                    q_proj: linear("attn_q", &attn.q_proj)?,
                    k_proj: linear("attn_k", &attn.k_proj)?,
                    v_proj: linear("attn_v", &attn.v_proj)?,
                    o_proj: linear("attn_output", &attn.o_proj)?,
                    q_norm: norm("attn_q_norm", &attn.q_norm.weight)?,
                    k_norm: norm("attn_k_norm", &attn.k_norm.weight)?,
                    gate_proj: linear("ffn_gate", &layer.mlp.gate_proj)?,
                    up_proj: linear("ffn_up", &layer.mlp.up_proj)?,
                    down_proj: linear("ffn_down", &layer.mlp.down_proj)?,
                    input_layernorm: norm("attn_norm", &layer.input_layernorm.weight)?,
                    post_attention_layernorm: norm(
                        "ffn_norm",
                        &layer.post_attention_layernorm.weight,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = vector(&context, "output_norm", &net.norm.weight)?;
        let decider = decider
            .map(|d| GpuDecider::upload(&context, d))
            .transpose()?;
        let no_map = context.buffer("no map", 4, wgpu::BufferUsages::STORAGE)?;
        // Every upload finished and nothing failed on the device.
        context.flush()?;
        Ok(GpuModel {
            context,
            pipelines,
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            inv_freq: net.rotary.inv_freq.clone(),
            cfg,
            max_iter,
            soft_topk,
            precision,
            embed_tokens,
            lm_head,
            layers,
            norm,
            decider,
            lora_rank,
            no_map,
            kv_segment_entries: options.test_hooks.kv_segment_entries,
        })
    }

    /// `name (backend)` of the adapter.
    pub fn adapter_name(&self) -> &str {
        &self.context.adapter
    }

    pub fn lose_device(&self) {
        self.context.device.destroy();
    }

    /// Most tokens one GPU chunk holds (its running logits stay on the GPU,
    /// in one binding).
    pub fn max_chunk_rows(&self) -> usize {
        let budget = (LOGITS_BUDGET as u64).min(self.context.max_binding) as usize;
        (budget / (4 * self.cfg.vocab_size)).clamp(1, MAX_CHUNK_ROWS)
    }

    /// A fresh KV cache whose vectors live on this model's GPU. Its buffers
    /// are allocated as entries arrive, so making one cannot fail.
    pub fn new_cache(&self, shape: KvShape, capacity: usize, precision: KvPrecision) -> KvCache {
        KvCache::on_gpu(
            shape,
            capacity,
            precision,
            GpuCacheState {
                owner: self.id,
                kv: None,
                work: Workspace::default(),
                scratch: Scratch::default(),
            },
        )
    }

    fn lm_head(&self) -> &GpuMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// Largest top-k a pass needs (decider and soft embedding).
    fn top_len(&self) -> usize {
        let decider_k = self.decider.as_ref().map_or(0, GpuDecider::topk);
        decider_k.max(self.soft_topk).min(self.cfg.vocab_size)
    }
}

fn layer_linears(layer: &crate::model::DecoderLayer) -> [&Linear; 7] {
    let (attn, mlp) = (&layer.self_attn, &layer.mlp);
    [
        &attn.q_proj,
        &attn.k_proj,
        &attn.v_proj,
        &attn.o_proj,
        &mlp.gate_proj,
        &mlp.up_proj,
        &mlp.down_proj,
    ]
}

/// Activation buffers of a session, by name, grown on demand (a chunk's
/// needs depend only on its number of tokens).
#[derive(Default)]
pub(crate) struct Workspace {
    buffers: HashMap<&'static str, wgpu::Buffer>,
}

impl Workspace {
    /// A buffer of at least `words` 4-byte words.
    fn get(
        &mut self,
        context: &GpuContext,
        name: &'static str,
        words: usize,
    ) -> Result<wgpu::Buffer> {
        let bytes = 4 * words.max(1) as u64;
        if let Some(buffer) = self.buffers.get(name).filter(|b| b.size() >= bytes) {
            return Ok(buffer.clone());
        }
        let buffer = context.buffer(
            name,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )?;
        self.buffers.insert(name, buffer.clone());
        Ok(buffer)
    }
}

/// The GPU side of a session's KV cache: the vectors, the activation
/// buffers and the submission scratch.
pub(crate) struct GpuCacheState {
    owner: u64,
    /// Created with the first chunk (sizes come from the model).
    kv: Option<GpuKv>,
    work: Workspace,
    scratch: Scratch,
}

impl GpuCacheState {
    pub fn entry_bytes(&self) -> usize {
        self.kv.as_ref().map_or(0, GpuKv::entry_bytes)
    }

    /// Bytes of the KV segments and activation buffers (GPU memory).
    pub fn allocated_bytes(&self) -> usize {
        let kv = self.kv.as_ref().map_or(0, GpuKv::allocated_bytes);
        let work: u64 = self.work.buffers.values().map(wgpu::Buffer::size).sum();
        kv + work as usize
    }

    /// A memory trim: frees the KV segments past `depth_lens[d - 1]` entries
    /// of each depth, and the activation and submission buffers (grown again
    /// by the next chunk).
    pub fn shrink(&mut self, depth_lens: &[usize]) {
        if let Some(kv) = &mut self.kv {
            kv.release_unused(depth_lens);
        }
        self.work = Workspace::default();
        self.scratch = Scratch::default();
    }
}

impl std::fmt::Debug for GpuCacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "GpuCacheState[model {}, {:?}]", self.owner, self.kv)
    }
}
