#!/usr/bin/env bash
# Installs the Debian packages DistributedVAE needs (once; later runs only check) and builds the
# release binary .build/release/vae. Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-numpy: the test suite's independent reader of exported weights (Tests/Reference).
packages=(libopenblas-dev libopenmpi-dev openmpi-bin libturbojpeg0-dev libpng-dev pkg-config python3-numpy)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "setup: swift not found on PATH (Swift 6 toolchain needed)" >&2; exit 1; }
echo "setup: building the release binary"
swift build -c release
echo "setup: ready: .build/release/vae"
