//! Recording GPU work: kernel dispatches (each with its parameters at its
//! own offset of one uniform buffer) and buffer copies, submitted together,
//! optionally reading buffers back in the same submission.

use super::context::GpuContext;
use super::pipelines::Pipelines;
use super::shaders::Kernel;
use crate::error::{GpuProblem, Result};

/// Kernel parameters: at most 16 words (64 bytes), f32s as their bits.
pub(crate) type Params = [u32; 16];
const PARAMS_BYTES: u64 = 64;

/// Workgroups of a dispatch, from a flat count (a dimension holds at most
/// 65535; kernels number a 2-D grid as one range).
pub(crate) fn grid(workgroups: usize) -> [u32; 3] {
    const MAX: usize = 65535;
    let x = workgroups.clamp(1, MAX);
    [x as u32, workgroups.div_ceil(x).max(1) as u32, 1]
}

/// Builds a [`Params`] from words and f32s: `params![a, b, f(x)]`.
macro_rules! params {
    ($($word:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut words: $crate::kernels::gpu::Params = [0; 16];
        let values: &[u32] = &[$($crate::kernels::gpu::ParamWord::word($word)),*];
        words[..values.len()].copy_from_slice(values);
        words
    }};
}
pub(crate) use params;

/// A value that goes into a [`Params`] word.
pub(crate) trait ParamWord {
    fn word(self) -> u32;
}

impl ParamWord for u32 {
    fn word(self) -> u32 {
        self
    }
}

impl ParamWord for usize {
    fn word(self) -> u32 {
        // Sizes are checked against the buffers (each below 4 GiB) first.
        self as u32
    }
}

impl ParamWord for bool {
    fn word(self) -> u32 {
        self as u32
    }
}

impl ParamWord for f32 {
    fn word(self) -> u32 {
        self.to_bits()
    }
}

enum Step {
    Dispatch {
        kernel: Kernel,
        params: usize,
        buffers: Vec<wgpu::Buffer>,
        workgroups: [u32; 3],
    },
    Copy {
        source: wgpu::Buffer,
        source_offset: u64,
        destination: wgpu::Buffer,
        destination_offset: u64,
        size: u64,
    },
}

/// Buffers a session reuses across submissions: the parameters' uniform
/// buffer and the read-back staging buffer (each grown on demand).
#[derive(Default)]
pub(crate) struct Scratch {
    params: Option<wgpu::Buffer>,
    staging: Option<wgpu::Buffer>,
}

fn ensure(
    context: &GpuContext,
    slot: &mut Option<wgpu::Buffer>,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> Result<wgpu::Buffer> {
    match slot {
        Some(buffer) if buffer.size() >= size => Ok(buffer.clone()),
        _ => {
            // Doubling: a session's submissions settle at one size quickly.
            let grown = size.max(slot.as_ref().map_or(0, |b| 2 * b.size()));
            let buffer = context.buffer(label, grown, usage)?;
            *slot = Some(buffer.clone());
            Ok(buffer)
        }
    }
}

pub(crate) struct Recorder<'a> {
    context: &'a GpuContext,
    pipelines: &'a Pipelines,
    params: Vec<Params>,
    steps: Vec<Step>,
}

impl<'a> Recorder<'a> {
    pub fn new(context: &'a GpuContext, pipelines: &'a Pipelines) -> Self {
        Recorder {
            context,
            pipelines,
            params: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// Runs `kernel` over `workgroups` with `params` and its storage
    /// buffers (bindings 1.., whole buffers).
    pub fn dispatch(
        &mut self,
        kernel: Kernel,
        params: Params,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) {
        self.params.push(params);
        self.steps.push(Step::Dispatch {
            kernel,
            params: self.params.len() - 1,
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
            workgroups,
        });
    }

    pub fn copy(
        &mut self,
        source: &wgpu::Buffer,
        source_offset: u64,
        destination: &wgpu::Buffer,
        destination_offset: u64,
        size: u64,
    ) {
        if size > 0 {
            self.steps.push(Step::Copy {
                source: source.clone(),
                source_offset,
                destination: destination.clone(),
                destination_offset,
                size,
            });
        }
    }

    /// Submits everything recorded and returns the bytes of `reads`
    /// (`(buffer, offset, size)`, copied after the last step), waiting at
    /// most the context's timeout.
    pub fn submit(
        self,
        scratch: &mut Scratch,
        reads: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let context = self.context;
        let stride = context
            .limits
            .min_uniform_buffer_offset_alignment
            .max(PARAMS_BYTES as u32) as u64;
        let mut encoder = context
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tah") });
        if !self.params.is_empty() {
            let params_buffer = ensure(
                context,
                &mut scratch.params,
                "parameters",
                stride * self.params.len() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            )?;
            let mut bytes = vec![0u8; (stride as usize) * self.params.len()];
            for (i, params) in self.params.iter().enumerate() {
                for (j, word) in params.iter().enumerate() {
                    let at = i * stride as usize + 4 * j;
                    bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
                }
            }
            context.queue.write_buffer(&params_buffer, 0, &bytes);
            self.encode(&mut encoder, &params_buffer, stride)?;
        }
        let total: u64 = reads.iter().map(|r| r.2.next_multiple_of(4)).sum();
        let staging = if total > 0 {
            let staging = ensure(
                context,
                &mut scratch.staging,
                "read-back",
                total,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?;
            let mut at = 0;
            for &(buffer, offset, size) in reads {
                let size = size.next_multiple_of(4);
                encoder.copy_buffer_to_buffer(buffer, offset, &staging, at, size);
                at += size;
            }
            Some(staging)
        } else {
            None
        };
        let index = context.scoped(
            || context.queue.submit([encoder.finish()]),
            GpuProblem::Internal,
        )?;
        // Without reads nothing waits here: later submissions queue behind
        // this one, and the next read reports a failure.
        let Some(staging) = staging else {
            return Ok(Vec::new());
        };
        let bytes = context.read_mapped(&staging, total, index)?;
        let mut out = Vec::with_capacity(reads.len());
        let mut at = 0usize;
        for &(_, _, size) in reads {
            out.push(bytes[at..at + size as usize].to_vec());
            at += (size as usize).next_multiple_of(4);
        }
        Ok(out)
    }

    fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        stride: u64,
    ) -> Result<()> {
        let device = &self.context.device;
        let mut pass: Option<wgpu::ComputePass> = None;
        for step in &self.steps {
            match step {
                Step::Dispatch {
                    kernel,
                    params: index,
                    buffers,
                    workgroups,
                } => {
                    let pipeline = self.pipelines.get(*kernel)?;
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: params,
                            offset: 0,
                            size: wgpu::BufferSize::new(PARAMS_BYTES),
                        }),
                    }];
                    for (i, buffer) in buffers.iter().enumerate() {
                        entries.push(wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: buffer.as_entire_binding(),
                        });
                    }
                    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.layout,
                        entries: &entries,
                    });
                    let pass = pass.get_or_insert_with(|| {
                        encoder
                            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: None,
                                timestamp_writes: None,
                            })
                            .forget_lifetime()
                    });
                    pass.set_pipeline(&pipeline.pipeline);
                    pass.set_bind_group(0, &group, &[(*index as u64 * stride) as u32]);
                    pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
                }
                Step::Copy {
                    source,
                    source_offset,
                    destination,
                    destination_offset,
                    size,
                } => {
                    // Copies are encoder commands: close the compute pass first.
                    drop(pass.take());
                    encoder.copy_buffer_to_buffer(
                        source,
                        *source_offset,
                        destination,
                        *destination_offset,
                        *size,
                    );
                }
            }
        }
        Ok(())
    }
}
