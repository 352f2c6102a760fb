//! The offline shader check: every kernel, in every variant, exactly as the
//! device receives it, parsed and validated by naga (wgpu's own shader
//! translator, at wgpu's version) with no optional capability (no f16
//! arithmetic, no subgroups, no 64-bit types: Android GPUs may lack them)
//! but packing f16 pairs in u32 words (`pack2x16float`, the f16 KV cache),
//! which wgpu grants on every Vulkan and Metal device (only GLES lacks it),
//! checked against wgpu's downlevel limits (what a mid-range iPhone or
//! Android phone guarantees: `wgpu_types::Limits::downlevel_defaults()`:
//! 256 invocations per workgroup (x, y <= 256, z <= 64), 16352 bytes of
//! workgroup memory, 4 storage buffers per stage, 16 KiB uniform
//! bindings), translated to Metal Shading Language 2.4 (iOS) and to SPIR-V
//! 1.3 (Vulkan 1.1, Android), and the SPIR-V validated by `spirv-val` when
//! it is installed (`.ci/run` installs it). No Metal compiler runs here.
//! Also checks that each kernel's bindings are the ones the Rust side binds.
//! Needs no GPU and no `gpu` feature.

use std::collections::BTreeMap;

use naga::back::msl;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, StorageAccess};
use tah_core::kernels::gpu::{Access, Kernel};

/// The Rust side's parameters: 16 words.
const PARAMS_BYTES: u32 = 64;

fn spirv_val() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("spirv-val"))
            .find(|p| p.is_file())
    })
}

/// MSL slots for the kernel's buffers, as wgpu assigns them (one per binding).
fn msl_resources(module: &naga::Module) -> msl::EntryPointResourceMap {
    let mut resources = BTreeMap::new();
    let mut slot = 0u8;
    for (_, global) in module.global_variables.iter() {
        if let Some(binding) = &global.binding {
            let mutable = matches!(global.space, AddressSpace::Storage { access } if access.contains(StorageAccess::STORE));
            resources.insert(
                *binding,
                msl::BindTarget {
                    buffer: Some(slot),
                    mutable,
                    ..Default::default()
                },
            );
            slot += 1;
        }
    }
    let entry = msl::EntryPointResources {
        resources,
        immediates_buffer: None,
        sizes_buffer: Some(slot),
    };
    module
        .entry_points
        .iter()
        .map(|ep| (ep.name.clone(), entry.clone()))
        .collect()
}

#[test]
fn every_kernel_translates_to_msl_and_spirv_within_phone_limits() {
    let limits = wgpu_types::Limits::downlevel_defaults();
    let validator_path = spirv_val();
    let mut checked = 0;
    for kernel in Kernel::all() {
        let name = kernel.name();
        let source = kernel.source();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        let info = Validator::new(
            ValidationFlags::all(),
            Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));

        // Workgroup shape and memory.
        assert_eq!(module.entry_points.len(), 1, "{name}");
        let [x, y, z] = module.entry_points[0].workgroup_size;
        assert!(
            x <= limits.max_compute_workgroup_size_x
                && y <= limits.max_compute_workgroup_size_y
                && z <= limits.max_compute_workgroup_size_z
                && x * y * z <= limits.max_compute_invocations_per_workgroup,
            "{name}: workgroup {x} x {y} x {z}"
        );
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let workgroup_bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == AddressSpace::WorkGroup)
            .map(|(_, g)| layouter[g.ty].size)
            .sum();
        assert!(
            workgroup_bytes <= limits.max_compute_workgroup_storage_size,
            "{name}: {workgroup_bytes} bytes of workgroup memory"
        );

        // Bindings: 0 the parameters, then the storage buffers the Rust
        // side binds, in order, read-only or read-write as declared.
        let mut storage = Vec::new();
        for (_, global) in module.global_variables.iter() {
            let Some(binding) = &global.binding else {
                continue;
            };
            assert_eq!(binding.group, 0, "{name}");
            match global.space {
                AddressSpace::Uniform => {
                    assert_eq!(binding.binding, 0, "{name}: parameters");
                    let size = layouter[global.ty].size;
                    assert!(
                        size <= PARAMS_BYTES
                            && size <= limits.max_uniform_buffer_binding_size as u32,
                        "{name}: {size}-byte parameters"
                    );
                }
                AddressSpace::Storage { access } => {
                    let access = if access.contains(StorageAccess::STORE) {
                        Access::Write
                    } else {
                        Access::Read
                    };
                    storage.push((binding.binding, access));
                }
                other => panic!("{name}: binding in {other:?}"),
            }
        }
        storage.sort_by_key(|b| b.0);
        let declared: Vec<(u32, Access)> = kernel
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, &a)| (i as u32 + 1, a))
            .collect();
        assert_eq!(storage, declared, "{name}: bindings");
        assert!(
            storage.len() <= limits.max_storage_buffers_per_shader_stage as usize,
            "{name}: {} storage buffers",
            storage.len()
        );

        // Metal (iOS).
        let msl_options = msl::Options {
            lang_version: (2, 4),
            per_entry_point_map: msl_resources(&module),
            fake_missing_bindings: false,
            ..Default::default()
        };
        let (metal, _) = msl::write_string(
            &module,
            &info,
            &msl_options,
            &msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: MSL: {e:?}"));
        assert!(metal.contains("kernel void"), "{name}");

        // SPIR-V (Vulkan 1.1: Android).
        let spv_options = naga::back::spv::Options {
            lang_version: (1, 3),
            ..Default::default()
        };
        let words = naga::back::spv::write_vec(&module, &info, &spv_options, None)
            .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e:?}"));
        if let Some(validator) = &validator_path {
            let file = std::env::temp_dir().join(format!("tah-{}-{name}.spv", std::process::id()));
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            std::fs::write(&file, bytes).unwrap();
            let out = std::process::Command::new(validator)
                .args(["--target-env", "vulkan1.1"])
                .arg(&file)
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&file);
            assert!(
                out.status.success(),
                "{name}: spirv-val: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        checked += 1;
    }
    println!(
        "{checked} kernels: WGSL valid (no optional capability but f16 packing), within wgpu's downlevel limits, \
         MSL 2.4 and SPIR-V 1.3 written; SPIR-V {}",
        if validator_path.is_some() {
            "validated by spirv-val (vulkan1.1)"
        } else {
            "not validated (spirv-val not installed)"
        }
    );
}
