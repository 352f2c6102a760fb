//! The GPU device: adapter choice, device creation, error capture, buffers,
//! uploads and bounded waits. Every failure becomes a typed
//! [`GpuProblem`]; nothing here panics on a GPU's say-so (wgpu's default
//! handler for uncaptured errors would).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::device::GpuOptions;
use crate::error::{GpuProblem, Result};

/// Default bound on one wait for the GPU.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Uploads go through wgpu's staging memory in pieces of this size, and
/// the queue is drained every few pieces, so an upload never stages more
/// than ~64 MiB at once.
const UPLOAD_PIECE: usize = 16 << 20;
const PIECES_PER_FLUSH: usize = 4;

/// The backend phones use on this platform.
fn backends() -> wgpu::Backends {
    if cfg!(target_vendor = "apple") {
        wgpu::Backends::METAL
    } else {
        wgpu::Backends::VULKAN
    }
}

/// Hardware first; a software rasterizer (lavapipe) only when nothing else.
fn preference(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn select_adapter(options: &GpuOptions) -> Result<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = backends();
    descriptor.flags = wgpu::InstanceFlags::from_build_config().with_env();
    let instance = wgpu::Instance::new(descriptor);
    let filter = options.adapter.as_ref().map(|f| f.to_lowercase());
    let mut adapters: Vec<wgpu::Adapter> =
        pollster::block_on(instance.enumerate_adapters(backends()))
            .into_iter()
            .filter(|a| {
                filter
                    .as_ref()
                    .is_none_or(|f| a.get_info().name.to_lowercase().contains(f))
            })
            .collect();
    adapters.sort_by_key(|a| preference(a.get_info().device_type));
    adapters.into_iter().next().ok_or_else(|| {
        GpuProblem::NoAdapter {
            filter: options.adapter.clone(),
        }
        .into()
    })
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?})", info.name, info.backend)
}

/// The adapter a model on the GPU would use, described.
pub fn adapter_name(options: &GpuOptions) -> Result<String> {
    Ok(describe(&select_adapter(options)?.get_info()))
}

/// Errors wgpu reports outside an error scope (from any thread), and a
/// lost device: recorded here, turned into typed errors by [`GpuContext::check`].
#[derive(Default)]
struct Faults {
    error: Option<GpuProblem>,
    lost: Option<String>,
}

fn problem_of(error: &wgpu::Error) -> GpuProblem {
    match error {
        wgpu::Error::OutOfMemory { .. } => GpuProblem::OutOfMemory(error.to_string()),
        other => GpuProblem::Internal(other.to_string()),
    }
}

pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// `name (backend)`.
    pub adapter: String,
    pub limits: wgpu::Limits,
    /// The largest storage binding (and so buffer) this model uses.
    pub max_binding: u64,
    faults: Arc<Mutex<Faults>>,
    wait_timeout: Duration,
}

impl GpuContext {
    pub fn open(options: &GpuOptions) -> Result<Self> {
        let adapter = select_adapter(options)?;
        let info = adapter.get_info();
        let mut required_limits = adapter.limits();
        if options.test_hooks.impossible_limits {
            required_limits.max_compute_workgroup_storage_size = u32::MAX;
            required_limits.max_storage_buffer_binding_size = u64::MAX / 2;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tah"),
            required_features: wgpu::Features::empty(),
            required_limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuProblem::DeviceRequest(e.to_string()))?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let sink = Arc::clone(&faults);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            let mut faults = sink.lock().unwrap_or_else(|e| e.into_inner());
            faults.error.get_or_insert_with(|| problem_of(&error));
        }));
        let sink = Arc::clone(&faults);
        device.set_device_lost_callback(move |reason, message| {
            let mut faults = sink.lock().unwrap_or_else(|e| e.into_inner());
            faults.lost.get_or_insert(format!("{reason:?}: {message}"));
        });
        let limits = device.limits();
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(options.test_hooks.max_binding_bytes.unwrap_or(u64::MAX));
        let context = GpuContext {
            device,
            queue,
            adapter: describe(&info),
            limits,
            max_binding,
            faults,
            wait_timeout: options.wait_timeout.unwrap_or(DEFAULT_WAIT),
        };
        if options.test_hooks.lose_device {
            context.device.destroy();
        }
        context.check()?;
        Ok(context)
    }

    /// The first fault wgpu reported since the device opened (they are
    /// sticky: a device that failed once is not trusted again). A lost
    /// device comes first: the errors it causes are its symptoms.
    pub fn check(&self) -> Result<()> {
        // Runs pending callbacks, the device-lost one included, without waiting.
        let _ = self.device.poll(wgpu::PollType::Poll);
        let faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &faults.lost {
            return Err(GpuProblem::DeviceLost(reason.clone()).into());
        }
        match &faults.error {
            Some(problem) => Err(problem.clone().into()),
            None => Ok(()),
        }
    }

    /// Runs `f` under error scopes, so a failure it causes comes back as
    /// `on_error(message)` (on this thread) rather than as a sticky fault.
    pub fn scoped<T>(
        &self,
        f: impl FnOnce() -> T,
        on_error: impl FnOnce(String) -> GpuProblem,
    ) -> Result<T> {
        self.check()?;
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        let errors = [
            pollster::block_on(internal.pop()),
            pollster::block_on(validation.pop()),
            pollster::block_on(memory.pop()),
        ];
        self.check()?;
        match errors.into_iter().flatten().next() {
            Some(wgpu::Error::OutOfMemory { .. }) => {
                Err(GpuProblem::OutOfMemory("allocating GPU memory".into()).into())
            }
            Some(error) => Err(on_error(error.to_string()).into()),
            None => Ok(value),
        }
    }

    /// A buffer of `size` bytes (rounded up to whole words) for `usage`.
    pub fn buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let size = size.max(4).next_multiple_of(4);
        let limit = if usage.contains(wgpu::BufferUsages::STORAGE) {
            self.max_binding
        } else {
            self.limits.max_buffer_size
        };
        if size > limit {
            return Err(GpuProblem::OverLimits {
                what: format!("buffer `{label}`"),
                needed: size,
                limit,
            }
            .into());
        }
        self.scoped(
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage,
                    mapped_at_creation: false,
                })
            },
            GpuProblem::Internal,
        )
    }

    /// A storage buffer holding `bytes` (padded to whole words), written in
    /// pieces so that wgpu never stages more than a few of them at once.
    pub fn upload(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let buffer = self.buffer(
            label,
            bytes.len() as u64,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        )?;
        for (i, piece) in bytes.chunks(UPLOAD_PIECE).enumerate() {
            let offset = (i * UPLOAD_PIECE) as u64;
            if piece.len().is_multiple_of(4) {
                self.queue.write_buffer(&buffer, offset, piece);
            } else {
                let mut padded = piece.to_vec();
                padded.resize(piece.len().next_multiple_of(4), 0);
                self.queue.write_buffer(&buffer, offset, &padded);
            }
            if (i + 1) % PIECES_PER_FLUSH == 0 {
                self.flush()?;
            }
        }
        self.flush()?;
        Ok(buffer)
    }

    /// Submits what the queue holds (pending writes) and waits for it.
    pub fn flush(&self) -> Result<()> {
        let index = self.queue.submit([]);
        self.wait(index)
    }

    /// Waits for submission `index`, at most the configured timeout.
    pub fn wait(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(self.wait_timeout),
        });
        self.check()?;
        match polled {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => Err(GpuProblem::Timeout(self.wait_timeout).into()),
            Err(e) => Err(GpuProblem::DeviceLost(e.to_string()).into()),
        }
    }

    /// Maps `staging` (already filled by submission `index`) and copies out
    /// its first `size` bytes.
    pub fn read_mapped(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        index: wgpu::SubmissionIndex,
    ) -> Result<Vec<u8>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |result| {
            let _ = sender.send(result);
        });
        self.wait(index)?;
        let mapped = receiver
            .recv_timeout(self.wait_timeout)
            .map_err(|_| GpuProblem::Timeout(self.wait_timeout))?;
        mapped.map_err(|e| GpuProblem::DeviceLost(format!("reading back results: {e}")))?;
        let bytes = {
            let view = staging
                .get_mapped_range(0..size)
                .map_err(|e| GpuProblem::Internal(format!("reading back results: {e}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(bytes)
    }
}
