//! Building the kernels ([`super::shaders`]) into compute pipelines, each
//! with its bind group layout: binding 0 its parameters (a uniform buffer
//! at a dynamic offset), then its storage buffers.

use std::collections::HashMap;

use super::context::GpuContext;
use super::shaders::{Access, Kernel};
use crate::error::{GpuProblem, Result};

pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// The compute pipelines of one model.
pub(crate) struct Pipelines {
    built: HashMap<Kernel, Pipeline>,
}

impl Pipelines {
    /// Builds `kernels`; a shader the device refuses is a typed error naming it.
    pub fn build(context: &GpuContext, kernels: &[Kernel], broken_shader: bool) -> Result<Self> {
        if broken_shader {
            // The failure path of a driver that refuses a shader, taken
            // through the same build as every real kernel.
            let source = format!(
                "{}\nfn broken() -> u32 {{ return undefined_name; }}",
                Kernel::Fill.source()
            );
            build_one(context, "broken", &source, Kernel::Fill.bindings())?;
        }
        let mut built = HashMap::new();
        for &kernel in kernels {
            let pipeline = build_one(context, &kernel.name(), &kernel.source(), kernel.bindings())?;
            built.insert(kernel, pipeline);
        }
        Ok(Pipelines { built })
    }

    pub fn get(&self, kernel: Kernel) -> Result<&Pipeline> {
        self.built
            .get(&kernel)
            .ok_or_else(|| GpuProblem::Internal(format!("kernel {kernel:?} was not built")).into())
    }
}

fn build_one(
    context: &GpuContext,
    name: &str,
    source: &str,
    bindings: &[Access],
) -> Result<Pipeline> {
    let device = &context.device;
    let failed = |reason: String| GpuProblem::ShaderBuild {
        shader: name.to_string(),
        reason,
    };
    context.scoped(
        || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: None,
                },
                count: None,
            }];
            for (i, access) in bindings.iter().enumerate() {
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: i as u32 + 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *access == Access::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                });
            }
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(name),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            Pipeline { pipeline, layout }
        },
        failed,
    )
}
