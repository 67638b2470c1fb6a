#!/usr/bin/env bash
# Training speed of this machine in the layouts of its 2 cores, in one run: 1 rank x 1 thread,
# 1 rank with 2 OpenBLAS threads, 1 rank x 2 threads (gradient-tree leaves on 2 threads, one
# OpenBLAS thread each), 2 ranks x 1 thread; then the scaling efficiency of 2 ranks and of 2
# threads over 1. Extra arguments go to every `vae bench` (e.g. --steps 200 --repeats 5).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vae="$root/.build/release/vae"
[ -x "$vae" ] || "$root/launch/setup.sh"
mpi=(-np 2 --bind-to core -x OPENBLAS_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)

rate() { awk '/^training:/ {print $2}'; }
echo "== 1 rank x 1 thread";         one=$("$vae" bench --threads 1 "$@" | tee /dev/stderr | rate)
echo "== 1 rank, 2 OpenBLAS threads"; blas=$("$vae" bench --blas-threads 2 "$@" | tee /dev/stderr | rate)
echo "== 1 rank x 2 threads";        threads=$("$vae" bench --threads 2 "$@" | tee /dev/stderr | rate)
echo "== 2 ranks x 1 thread";        ranks=$(mpirun "${mpi[@]}" "$vae" bench --threads 1 "$@" | tee /dev/stderr | rate)
echo
printf '%-28s %10s\n' layout "images/s" "1 rank x 1 thread" "$one" "1 rank, 2 OpenBLAS threads" "$blas" \
    "1 rank x 2 threads" "$threads" "2 ranks x 1 thread" "$ranks"
awk -v one="$one" -v ranks="$ranks" -v threads="$threads" 'BEGIN {
    printf "scaling over 1 rank x 1 thread: 2 ranks %.2fx (efficiency %.0f%%), 2 threads %.2fx (%.0f%%)\n",
           ranks / one, 50 * ranks / one, threads / one, 50 * threads / one }'
