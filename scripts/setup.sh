#!/usr/bin/env bash
# Makes a fresh machine ready to run Canopy: pnpm, the workspace's dependencies,
# and a WebGPU driver (SwiftShader, a software Vulkan driver from Debian's
# chromium package) when the machine has no GPU. Safe to run again: each step
# is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

if ! command -v pnpm >/dev/null 2>&1; then
  say "installing pnpm 10 with npm"
  npm install -g --silent pnpm@10 >&2
fi

if [ ! -f node_modules/.modules.yaml ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  say "installing dependencies (pnpm install --frozen-lockfile)"
  pnpm install --frozen-lockfile --reporter=silent >&2
fi

has_gpu() { ls /dev/nvidia0 /dev/dri/renderD* >/dev/null 2>&1; }
has_vulkan_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; }
has_swiftshader() { [ -f /usr/lib/chromium/vk_swiftshader_icd.json ]; }

if ! has_vulkan_loader || { ! has_gpu && ! has_swiftshader; }; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing a WebGPU driver: Vulkan loader$(has_gpu || echo ' and SwiftShader (Debian chromium)')"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    pkgs="libvulkan1"
    has_gpu || pkgs="$pkgs chromium-common"  # ships SwiftShader: libvk_swiftshader.so + its ICD file
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    say "no GPU driver found and cannot install one here: run as root on Debian/Ubuntu, or"
    say "  apt-get install -y chromium-common libvulkan1   (SwiftShader, a software WebGPU driver)"
  fi
fi

# The web page's tests drive Debian's Chromium headless (playwright-core cannot download its own browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Chromium (Debian's chromium), for the web page's tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    say "no chromium found and cannot install one here: the web page's tests need it; run as root on Debian/Ubuntu, or"
    say "  apt-get install -y chromium"
  fi
fi

# Without a GPU, Mesa's lavapipe too: a second software adapter, with shader-f16, on which the tests run the
# native-f16 kernels (SwiftShader has no shader-f16). Unpacked into .cache/lavapipe, where Canopy finds it;
# nothing is installed but the libraries it lacks (as root), and the machine's package sources stay as they are.
if ! has_gpu && ! bash scripts/lavapipe.sh --install-deps >/dev/null; then
  say "lavapipe is not available here (see above): the shader-f16 tests skip (in CI they fail)"
fi

# redis-server: the queue of distributed runs (canopy sample --queue, canopy worker) and what its tests start
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing redis-server (Debian's package) for the distributed queue and its tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  else
    say "redis-server is missing: the distributed commands and their tests need it; as root: apt-get install -y redis-server"
  fi
fi
