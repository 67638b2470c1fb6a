#!/usr/bin/env bash
# Installs the Debian packages DistributedVAE needs (once; later runs only check) and builds the
# release binary .build/release/vae. Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

install_missing() {
    local package missing=()
    for package in "$@"; do
        [[ "$package" == -* ]] && continue
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    echo "setup: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
# python3-numpy: the test suite's independent reader of exported weights (Tests/Reference).
install_missing libopenblas-dev libopenmpi-dev openmpi-bin libturbojpeg0-dev libpng-dev pkg-config python3-numpy
# The multi-host and Slurm tests: iproute2 and nftables for launch/netns-hosts.sh (namespaces,
# tc, dropped packets), and Slurm's daemons, client and munge for launch/slurm-local.sh (which
# starts them itself, with a configuration of its own; nothing is configured system-wide).
# Without recommends: those would add Slurm's database and GUI plugins. About 20 s.
install_missing --no-install-recommends iproute2 nftables slurmctld slurmd slurm-client munge

command -v swift >/dev/null || { echo "setup: swift not found on PATH (Swift 6 toolchain needed)" >&2; exit 1; }
echo "setup: building the release binary"
swift build -c release
echo "setup: ready: .build/release/vae"
