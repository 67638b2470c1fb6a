#!/usr/bin/env bash
# The measurements behind docs/scaling.md, in interleaved rounds (the machine may be shared):
#  1. one allreduce of the 4.6 MB gradient between 2 ranks (vae bench's figure: median of 20, each
#     after a barrier) over shared memory, TCP on one host, and TCP between 2 namespace hosts
#     (launch/netns-hosts.sh) unshaped and with both links shaped by tbf to 25, 10 and 1 Gbit/s;
#  2. the compute time of one step on one core for pieces of 64 down to 1 image (vae bench at that
#     batch, one thread: the time of the largest piece when a batch is split over ranks).
#
#   launch/scaling-measure.sh [ROUNDS]      (default 3; prints every figure, then the medians)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vae="$root/.build/release/vae"
rounds=${1:-3}
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
results=$(mktemp)
trap 'rm -f "$results"' EXIT
# A few steps, so that the allreduce measurement starts soon.
bench=("$vae" bench --threads 1 --steps 3 --warmup 1 --repeats 1)

# "allreduce of 4.6 MB of gradients: 0.42 ms; ..." -> 0.42
allreduce_ms() { awk '/^allreduce of/ {print $7}'; }
links=(shared-memory tcp-one-host netns netns-25gbit netns-10gbit netns-1gbit)
measure_link() {
    local shape=()
    case "$1" in
        shared-memory) mpirun --quiet -np 2 --bind-to core "${bench[@]}" ;;
        tcp-one-host) mpirun --quiet -np 2 --bind-to core --mca btl tcp,self "${bench[@]}" ;;
        netns*)
            [ "$1" = netns ] || shape=(--shape "1:rate=${1#netns-}" --shape "2:rate=${1#netns-}")
            "$root/launch/netns-hosts.sh" --hosts 2 "${shape[@]}" -- mpirun --quiet -np 2 -x OPENBLAS_NUM_THREADS "${bench[@]}" 2>/dev/null ;;
    esac
}
# "run 1: 372 images/s (172.19 ms per step)" -> 172.19
step_ms() { awk '/^run 1:/ {sub(/\(/, "", $5); print $5}'; }
pieces=(64 32 16 8 4 2 1)

for ((round = 1; round <= rounds; round++)); do
    for link in "${links[@]}"; do
        ms=$(measure_link "$link" | allreduce_ms)
        echo "round $round: allreduce $link: $ms ms" | tee -a "$results"
    done
    for piece in "${pieces[@]}"; do
        ms=$("$vae" bench --threads 1 --batch "$piece" --steps $((256 / piece + 5)) --warmup 2 --repeats 1 | step_ms)
        echo "round $round: compute piece $piece: $ms ms" | tee -a "$results"
    done
done
echo "medians of $rounds rounds:"
for what in "${links[@]/#/allreduce }" "${pieces[@]/#/compute piece }"; do
    grep -F ": $what: " "$results" | awk '{print $(NF - 1)}' | sort -g \
        | awk -v what="$what" '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%-30s %8.2f ms\n", what, m}'
done
