#!/usr/bin/env bash
# Mesa's lavapipe (a software Vulkan driver) from Debian bookworm-backports
# (Mesa 25.0.7), unpacked into a project cache folder without installing it:
# unlike SwiftShader it offers shader-f16, so the native-f16 kernel paths can
# run on a machine without a GPU. Bookworm's own Mesa 22 lavapipe is rejected
# by Dawn. Idempotent: a second run only prints the ICD file.
#
#   scripts/lavapipe.sh                  # prints the ICD json path
#   scripts/lavapipe.sh --install-deps   # the same, installing the libraries it lacks first (root, apt)
#   CANOPY_ADAPTER=llvmpipe <command>    # Canopy finds the cached driver by itself
#
# The driver links against bookworm's libLLVM-15, libdrm and X/Wayland client
# libraries (most of which `apt-get install chromium-common libvulkan1` in
# setup.sh already brings); the script says which are missing, and with
# --install-deps installs them from the machine's own package sources (what
# scripts/setup.sh does). Otherwise nothing outside the cache folder (default
# .cache/lavapipe, git-ignored; CANOPY_LAVAPIPE_DIR moves it, for the script
# and for Canopy alike) is written, and apt's own state is untouched: the
# package lists for the one extra suite live in a temporary folder.
set -euo pipefail

install_deps=0
case "${1:-}" in
  "") ;;
  --install-deps) install_deps=1 ;;
  *) echo "usage: scripts/lavapipe.sh [--install-deps]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${CANOPY_LAVAPIPE_DIR:-$root/.cache/lavapipe}"
suite="bookworm-backports"
version="25.0.7-2~bpo12+1"
lib="$dir/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
icd="$dir/lvp_icd.json"

if [[ -f "$icd" && -f "$lib" && "$(cat "$dir/version" 2>/dev/null)" == "$version" ]]; then
  echo "$icd"
  exit 0
fi

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null || { echo "lavapipe.sh: needs $tool (a Debian or Ubuntu system)" >&2; exit 1; }
done
[[ "$(uname -m)" == "x86_64" ]] || { echo "lavapipe.sh: only x86_64 is set up here" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/deb"
echo "deb http://deb.debian.org/debian $suite main" >"$tmp/sources.list"
apt=(
  -o "Dir::Etc::SourceList=$tmp/sources.list"
  -o "Dir::Etc::SourceParts=$tmp/parts"
  -o "Dir::State::Lists=$tmp/lists"
  -o "Dir::Cache=$tmp/cache"
  # the download lands in a folder apt's sandbox user may not write; nothing is installed
  -o "APT::Sandbox::User=root"
)
echo "lavapipe.sh: fetching the $suite package list" >&2
apt-get "${apt[@]}" -qq update >&2
echo "lavapipe.sh: downloading mesa-vulkan-drivers $version" >&2
# the archive keeps only a suite's newest version: once this one is gone, take that (the tests say whether it still works)
if ! (cd "$tmp/deb" && apt-get "${apt[@]}" -qq download "mesa-vulkan-drivers=$version" >&2 2>/dev/null); then
  echo "lavapipe.sh: $version is no longer in $suite; taking the version it has now" >&2
  (cd "$tmp/deb" && apt-get "${apt[@]}" -qq download "mesa-vulkan-drivers/$suite" >&2)
fi

rm -rf "$dir"
mkdir -p "$dir"
dpkg -x "$tmp/deb"/mesa-vulkan-drivers_*.deb "$tmp/x"
mkdir -p "$(dirname "$lib")"
# only lavapipe: the package's other drivers (radv, anv, ...) are for hardware
cp "$tmp/x/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" "$lib"
api="$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$tmp/x/usr/share/vulkan/icd.d/lvp_icd.json")"
cat >"$icd" <<EOF
{
    "file_format_version": "1.0.0",
    "ICD": { "library_path": "$lib", "api_version": "${api:-1.4.305}" }
}
EOF

# what the driver links against, by bookworm's package names
deps="libllvm15 libdrm2 libwayland-client0 libx11-xcb1 libxcb1 libxcb-dri3-0 libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1 libzstd1 libexpat1 zlib1g"
missing() { ldd "$lib" | awk '/not found/ { print $1 }'; }
if [[ -n "$(missing)" && "$install_deps" == 1 && "$(id -u)" == 0 ]]; then
  echo "lavapipe.sh: installing the libraries the driver needs ($(echo $(missing)))" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends $deps >/dev/null
fi
if [[ -n "$(missing)" ]]; then
  echo "lavapipe.sh: the driver needs libraries this system lacks: $(echo $(missing))" >&2
  echo "lavapipe.sh: install them with apt-get (bookworm: $deps), or run this again as root with --install-deps" >&2
  exit 1
fi
echo "$version" >"$dir/version"
echo "$icd"
