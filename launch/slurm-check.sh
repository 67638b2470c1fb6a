#!/usr/bin/env bash
# Checks launch/slurm.sbatch on a real, one-machine Slurm cluster (launch/slurm-local.sh):
#  1. a batch job of 2 tasks writes the same checkpoint bytes as launch/train.sh with 2 ranks;
#  2. a job stopped with `scancel --signal=TERM` mid-run writes a checkpoint, requeues itself,
#     resumes from it, and ends with the same bytes as the uninterrupted run.
#
#   launch/slurm-check.sh DATASET [STEPS]      (STEPS default 12; the stop comes after step 3)
#
# Prints one line per stage, with its time, and exits non-zero at the first difference.
# VAE_BINARY chooses the binary (default .build/release/vae).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${SLURM_CONF:-}" ]; then exec "$root/launch/slurm-local.sh" -- "$0" "$@"; fi
data=$(realpath "${1:?dataset file}")
steps=${2:-12}
export VAE_BINARY="${VAE_BINARY:-$root/.build/release/vae}"
work=$(mktemp -d "${TMPDIR:-/tmp}/slurm-check.XXXX")
trap 'rm -rf "$work"' EXIT
cd "$root"
# The sbatch script's defaults (batch 256, lr 0.002) and a leaf that does not depend on the cores.
train=(--max-steps "$steps" --leaf 32 --log-every 1)
last=$(printf 'checkpoint-%08d.bin' "$steps")
started=$SECONDS
say() { echo "slurm-check: $* ($((SECONDS - started)) s)"; }

launch/train.sh --ranks 2 -- --data "$data" --out "$work/reference" --batch 256 --lr 0.002 "${train[@]}" >"$work/reference.log" 2>&1 \
    || { cat "$work/reference.log" >&2; exit 1; }
say "launch/train.sh --ranks 2: $steps steps"

job=(--nodes=1 --ntasks-per-node=2 --time=30)
# Waits until job $1 has left the queue (sbatch --wait polls with growing pauses, up to 30 s late).
wait_for_job() {
    while squeue -h -j "$1" 2>/dev/null | grep -q .; do
        [ "$((SECONDS - started))" -lt 900 ] || { echo "slurm-check: job $1 did not finish" >&2; exit 1; }
        sleep 0.5
    done
}
id=$(sbatch --parsable --output="$work/whole.out" "${job[@]}" launch/slurm.sbatch "$data" "$work/whole" "${train[@]}")
wait_for_job "$id"
grep -m 1 "MPI ranks" "$work/whole.out"
cmp "$work/reference/$last" "$work/whole/$last" \
    || { echo "slurm-check: sbatch and train.sh checkpoints differ; the job said:" >&2; cat "$work/whole.out" >&2; exit 1; }
say "sbatch launch/slurm.sbatch, 2 tasks: the same $last bytes as launch/train.sh"

id=$(sbatch --parsable --output="$work/stopped.out" "${job[@]}" launch/slurm.sbatch "$data" "$work/stopped" "${train[@]}")
# Wait for step 3 in the run's metrics, then stop it as a preemption would.
steps_done() { cat "$work/stopped/metrics.jsonl" 2>/dev/null | grep -c '"loss"'; }
until [ "$(steps_done)" -ge 3 ]; do
    squeue -h -j "$id" | grep -q . || { echo "slurm-check: job $id ended before step 3" >&2; cat "$work/stopped.out" >&2; exit 1; }
    sleep 0.2
done
scancel --signal=TERM "$id"
say "scancel --signal=TERM $id after step $(steps_done)"
# The stopped job requeues itself and resumes; wait until it has finished for good.
wait_for_job "$id"
grep -q '"event":"stopped"' "$work/stopped/metrics.jsonl" \
    || { echo "slurm-check: the run never stopped on the TERM" >&2; cat "$work/stopped.out" >&2; exit 1; }
grep -m 1 "resuming" "$work/stopped.out" \
    || { echo "slurm-check: the requeued job did not resume" >&2; cat "$work/stopped.out" >&2; exit 1; }
cmp "$work/reference/$last" "$work/stopped/$last" \
    || { echo "slurm-check: the stopped and resumed run's checkpoint differs; the job said:" >&2; cat "$work/stopped.out" >&2; exit 1; }
say "stopped, requeued, resumed: the same $last bytes"
