#!/usr/bin/env bash
# Runs a bundle made by scripts/gpu-pack.sh, on the GPU machine; it is copied
# into the pack as run.sh:
#
#   bash .gpu/run.sh NAME.mjs [args...]
#
# Needs only bash and xz there. Node.js and the webgpu binary are unpacked
# once into the pack itself (so it must be writable), and again when a newer
# pack replaces them. The packed Vulkan loader and GL dispatch libraries are
# used only where the machine lacks its own (CANOPY_GPU_PACKED_LIBS=1 forces
# them, =0 never). The NVIDIA Vulkan driver that container runtimes mount
# under /usr/local/nvidia is found without a variable to set.
set -euo pipefail
g=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bundles() { (cd "$g" && ls *.mjs 2>/dev/null | tr '\n' ' '); }
[ $# -ge 1 ] || { echo "usage: bash $0 NAME.mjs [args...]   (bundles: $(bundles))" >&2; exit 2; }
script=$1
shift
[ -f "$g/$script" ] || { echo "run.sh: no bundle $script in $g (bundles: $(bundles))" >&2; exit 2; }
command -v xz >/dev/null || { echo "run.sh: needs xz to unpack Node.js (apt-get install -y xz-utils)" >&2; exit 1; }

# Unpacks FILE.xz into TARGET unless TARGET came from this very FILE.xz (size and time of it, in a stamp).
unpack() {
  local packed=$1 target=$2 stamp
  stamp=$(stat -c '%s %Y' "$packed")
  if [ ! -f "$target" ] || [ "$(cat "$target.stamp" 2>/dev/null)" != "$stamp" ]; then
    mkdir -p "$(dirname "$target")"
    xz -dc "$packed" > "$target.tmp"
    mv "$target.tmp" "$target"
    echo "$stamp" > "$target.stamp"
  fi
}
unpack "$g/node.xz" "$g/.unpacked/node"
chmod +x "$g/.unpacked/node"
dawn="$g/node_modules/webgpu/dist/linux-x64/dawn.node"
unpack "$dawn.xz" "$dawn"

use_packed=${CANOPY_GPU_PACKED_LIBS:-auto}
if [ "$use_packed" = auto ]; then
  known=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)
  use_packed=0
  grep -q 'libvulkan\.so\.1 ' <<< "$known" && grep -q 'libGLdispatch\.so\.0 ' <<< "$known" || use_packed=1
fi
if [ "$use_packed" = 1 ] && [ -d "$g/lib" ]; then
  export LD_LIBRARY_PATH="$g/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# Container runtimes mount the NVIDIA driver's Vulkan and EGL manifests where the loader does not look.
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/*.json; do
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd" && break
  done
fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"

exec "$g/.unpacked/node" "$g/$script" "$@"
