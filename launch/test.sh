#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (release build: the training
# and MPI tests run the real binary). Tests that need CelebA read CELEBA_DIR (default
# ../shared/celeba-sample) and are skipped, saying so, where it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
swift test -c release "$@"
