#!/usr/bin/env bash
# Installs what the GPU suite needs on a Debian 12 (bookworm) machine
# without a GPU, as root, and the rustup targets of the phone cross-checks.
# Idempotent: a rerun on a prepared machine takes a second.
#
#   mesa-vulkan-drivers  lavapipe, Mesa's software Vulkan driver (22.3): the
#                        device wgpu runs the WGSL kernels on here
#   libvulkan1           the Vulkan loader (wgpu loads it at run time)
#   vulkan-tools         vulkaninfo (prints the device below)
#   spirv-tools          spirv-val (tests/shaders.rs validates the SPIR-V)
#   rustup targets aarch64-apple-ios, aarch64-linux-android
set -euo pipefail

log() { echo "[setup-gpu-env] $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-gpu-env.sh must run as root (apt-get)" >&2
    exit 1
fi

missing=()
for package in mesa-vulkan-drivers libvulkan1 vulkan-tools spirv-tools; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "packages present"
fi

rustup target add aarch64-apple-ios aarch64-linux-android >/dev/null 2>&1 ||
    rustup target add aarch64-apple-ios aarch64-linux-android

# Mesa complains on stderr without it (harmless).
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverInfo|apiVersion" || {
    echo "setup-gpu-env.sh: no Vulkan device after installing lavapipe" >&2
    exit 1
}
