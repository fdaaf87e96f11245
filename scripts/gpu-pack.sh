#!/usr/bin/env bash
# Packs Canopy programs into one self-contained folder for a Linux x86-64
# machine that has a GPU and its driver but perhaps no Node.js, no package
# registry and no Vulkan loader. Copy the folder there and run a bundle with
# the run script it holds.
#
#   scripts/gpu-pack.sh [--out DIR] [--fast] [--no-vulkan] ENTRY.ts [ENTRY2.ts ...]
#   # on the GPU machine, from the folder that holds the pack:
#   bash .gpu/run.sh ENTRY.mjs [args...]
#
# What goes in DIR (default: .gpu/ in the repository root, ignored by git):
#   NAME.mjs         each entry bundled by esbuild (the project's dev dependency);
#                    `webgpu` stays external, because its native binary cannot be bundled
#   node.xz          this machine's Node.js, compressed (the GPU machine may have none)
#   node_modules/webgpu/   the webgpu package with its linux-x64 binary only, compressed
#   lib/             the Vulkan loader and the GL dispatch libraries NVIDIA's Vulkan
#                    driver links against, from Debian's packages (used by run.sh only
#                    where the machine lacks them; --no-vulkan leaves them out)
#   run.sh           unpacks node and the binary once, points the Vulkan loader at the
#                    NVIDIA driver, and runs a bundle
#   pack.txt         what was packed: versions, commit, entries
#
# Options:
#   --out DIR     pack into DIR instead of .gpu/
#   --fast        compress with xz -0: several times quicker to pack, about a fifth larger
#   --no-vulkan   leave out lib/ (the GPU machine has its own Vulkan loader)
#
# Node.js, the webgpu binary and lib/ are kept between runs and packed again
# only when their version changes, so packing a changed entry takes seconds.
# A bundle is one file: an entry that reads files next to its sources at run
# time must embed them or take their paths as arguments.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { echo "usage: scripts/gpu-pack.sh [--out DIR] [--fast] [--no-vulkan] ENTRY.ts [ENTRY2.ts ...]" >&2; exit 2; }
fail() { echo "gpu-pack: $*" >&2; exit 1; }

out="$root/.gpu"
level=-6
vulkan=1
entries=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --fast) level=-0; shift ;;
    --no-vulkan) vulkan=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; entries+=("$@"); break ;;
    -*) echo "gpu-pack: unknown option $1" >&2; usage ;;
    *) entries+=("$1"); shift ;;
  esac
done
[ ${#entries[@]} -ge 1 ] || usage

# Entries are paths from where the script is called; each must exist and give a distinct bundle name.
declare -A seen=()
abs=()
for entry in "${entries[@]}"; do
  [ -f "$entry" ] || { echo "gpu-pack: no such entry file: $entry" >&2; exit 2; }
  name=$(basename "${entry%.*}")
  [ -z "${seen[$name]:-}" ] || { echo "gpu-pack: two entries would both be bundled as $name.mjs" >&2; exit 2; }
  seen[$name]=1
  abs+=("$(cd "$(dirname "$entry")" && pwd)/$(basename "$entry")")
done

# The node binary shipped is this machine's, so this machine must be what the GPU machine is.
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || fail "packs for Linux x86-64 and must run on one (this is $(uname -s)-$(uname -m))"
command -v node >/dev/null || fail "needs Node.js on this machine (the one it ships)"
command -v xz >/dev/null || fail "needs xz (apt-get install -y xz-utils)"
esbuild="$root/node_modules/.bin/esbuild"
[ -x "$esbuild" ] || fail "esbuild is not installed: run 'make setup' (or 'pnpm install') in $root first"
# webgpu as the kernels package, which loads it, resolves it.
wg=$(cd "$root/packages/kernels" && node -p "require('path').dirname(require.resolve('webgpu/package.json'))" 2>/dev/null) ||
  fail "the webgpu package is not installed: run 'make setup' (or 'pnpm install') in $root first"
[ -f "$wg/dist/linux-x64/dawn.node" ] || fail "webgpu at $wg has no linux-x64 binary"

mkdir -p "$out"
out=$(cd "$out" && pwd)
threads=$(nproc 2>/dev/null || echo 2)
say() { printf 'gpu-pack: %s\n' "$*" >&2; }

# Node.js, packed again when this machine's version differs from the packed one.
node_bin=$(readlink -f "$(command -v node)")
node_version=$(node --version)
if [ ! -f "$out/node.xz" ] || [ "$(cat "$out/node.version" 2>/dev/null)" != "$node_version" ]; then
  say "compressing Node.js $node_version ($node_bin)"
  xz -T"$threads" "$level" -c "$node_bin" > "$out/node.xz.tmp"
  mv "$out/node.xz.tmp" "$out/node.xz"
  echo "$node_version" > "$out/node.version"
fi

# The webgpu package: its loader and the linux-x64 binary, nothing else.
wg_version=$(node -p "require('$wg/package.json').version")
wg_out="$out/node_modules/webgpu"
if [ ! -f "$wg_out/dist/linux-x64/dawn.node.xz" ] || [ "$(cat "$wg_out/version" 2>/dev/null)" != "$wg_version" ]; then
  say "compressing webgpu $wg_version's linux-x64 binary"
  rm -rf "$wg_out"
  mkdir -p "$wg_out/dist/linux-x64"
  cp "$wg/package.json" "$wg/index.js" "$wg_out/"
  [ -f "$wg/LICENSE.md" ] && cp "$wg/LICENSE.md" "$wg_out/"
  xz -T"$threads" "$level" -c "$wg/dist/linux-x64/dawn.node" > "$wg_out/dist/linux-x64/dawn.node.xz"
  echo "$wg_version" > "$wg_out/version"
fi

# The Vulkan loader and the GL dispatch libraries, unpacked from Debian's packages
# here, so the GPU machine needs neither dpkg nor root to use them.
if [ "$vulkan" = 1 ] && [ ! -e "$out/lib/libvulkan.so.1" ]; then
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    fail "needs apt-get and dpkg-deb to fetch the Vulkan loader; on a GPU machine that has one, pass --no-vulkan"
  say "fetching the Vulkan loader and GL dispatch libraries (Debian packages)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  pkgs=(libvulkan1 libglvnd0 libegl1 libopengl0 libgl1 libglx0 libgles2)
  amd64=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64)
  # This machine's package lists first; a private, freshly updated set when they lack the packages.
  if ! (cd "$work" && apt-get "${amd64[@]}" download "${pkgs[@]}" >/dev/null 2>&1); then
    mkdir -p "$work/lists/partial"
    apt-get "${amd64[@]}" -oDir::State::Lists="$work/lists" update -qq >/dev/null 2>&1 ||
      fail "could not update the package lists (no network?); pass --no-vulkan if the GPU machine has a Vulkan loader"
    (cd "$work" && apt-get "${amd64[@]}" -oDir::State::Lists="$work/lists" download "${pkgs[@]}" >/dev/null 2>&1) ||
      fail "could not download ${pkgs[*]}"
  fi
  mkdir -p "$work/root"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  rm -rf "$out/lib.tmp"
  mkdir -p "$out/lib.tmp/copyright"
  cp -a "$work/root/usr/lib/x86_64-linux-gnu/"*.so.* "$out/lib.tmp/"
  for doc in "$work/root/usr/share/doc/"*/copyright; do cp "$doc" "$out/lib.tmp/copyright/$(basename "$(dirname "$doc")")"; done
  (cd "$work" && ls *.deb) > "$out/lib.tmp/packages.txt"
  rm -rf "$out/lib"
  mv "$out/lib.tmp" "$out/lib"
fi
[ "$vulkan" = 1 ] || rm -rf "$out/lib"

# The bundles, from the workspace packages' sources (their `@canopy/source` export
# condition), so no build is needed first and a stale dist/ is never packed. The
# banner gives bundled CommonJS code (and the loader of webgpu) a `require`.
for entry in "${abs[@]}"; do
  name=$(basename "${entry%.*}")
  (cd "$root" && "$esbuild" "$entry" --bundle --platform=node --format=esm --target=node20 \
    --external:webgpu --conditions=@canopy/source --outfile="$out/$name.mjs" --log-level=warning \
    --banner:js="import { createRequire as __canopyCreateRequire } from 'node:module'; const require = __canopyCreateRequire(import.meta.url);") ||
    fail "esbuild could not bundle $entry"
done

cp "$root/scripts/gpu-run.sh" "$out/run.sh"
chmod +x "$out/run.sh"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | head -1)
{
  echo "packed:  $(date -u +%Y-%m-%dT%H:%M:%SZ) from commit $commit${dirty:+ (with uncommitted changes)}"
  echo "node:    $node_version"
  echo "webgpu:  $wg_version"
  echo "vulkan:  $(if [ -f "$out/lib/packages.txt" ]; then tr '\n' ' ' < "$out/lib/packages.txt"; else echo "not packed (--no-vulkan)"; fi)"
  echo "bundles: $(cd "$out" && ls *.mjs | tr '\n' ' ')"
} > "$out/pack.txt"

shown=$out
case "$out" in "$root"/*) shown=${out#"$root"/} ;; esac
say "packed $(du -sh "$out" | cut -f1) into $shown; on the GPU machine: bash $shown/run.sh $(basename "${abs[0]%.*}").mjs [args...]"
