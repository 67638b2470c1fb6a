#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite twice: in a release build (what
# users run: the training and MPI tests start the real binary) and in a debug build, where the
# engine's preconditions, bounds and overflow checks, compiled out of its release build, run too.
# Tests that need CelebA read CELEBA_DIR (default ../shared/celeba-sample) and are skipped, saying
# so, where it is absent; with CI=true they fail instead. So do the tests that need python3 with
# NumPy (which setup.sh installs).
# Measured on the project's 2-core machine from a fresh clone: about 4 minutes for the release pass
# and 23 for the debug pass (which runs the unoptimised binary under mpirun), builds included.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
echo "test.sh: release build"
swift test -c release "$@"
echo "test.sh: debug build"
# The multi-host and Slurm suites test the launch plumbing (namespaces, mpirun's agent, sbatch), the
# same in either build; in the debug build they would only add about 8 minutes of unoptimised steps.
swift test --skip 'MultiHostTests|SlurmTests' "$@"
