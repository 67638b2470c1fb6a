#!/usr/bin/env bash
# Training throughput of DistributedVAE and the PyTorch and Keras peers (../shared/peers), side by
# side in one session, interleaved, ROUNDS rounds (default 3); batch 64, the seed model; float32,
# then mixed precision (ours --precision bf16, PyTorch bf16 autocast with channels-last, Keras
# mixed_bfloat16).
# The peers' virtual environments come from ../shared/peers/setup.sh DIR (PEERS_ENV, default
# /tmp/peers). Not part of the test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS_DIR:-$root/../shared/peers}"
envs="${PEERS_ENV:-/tmp/peers}"
vae="$root/.build/release/vae"
[ -x "$vae" ] || "$root/launch/setup.sh"
mpi=(-np 2 --bind-to core -x OPENBLAS_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
torch="$envs/venv-torch/bin/python" keras="$envs/venv-keras/bin/python"
peer=(--synthetic 8192 --steps 220 --warmup 20)

ours() { "$@" | awk '/^training:/ {print $2}'; }
theirs() { "$@" 2>/dev/null | tail -1 | python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["images_per_s"])'; }
cd "$peers"
for round in $(seq "${ROUNDS:-3}"); do
    echo "round $round"
    for precision in fp32 bf16; do
        # Each framework's own mixed precision: bf16 operands, float32 weights and loss.
        mixed_torch=() mixed_keras=()
        [ "$precision" = bf16 ] && mixed_torch=(--autocast-bf16 --channels-last) mixed_keras=(--mixed-bf16)
        bench=(bench --precision "$precision" --steps 200 --repeats 1)
        echo "$precision ours 1 thread           $(ours "$vae" "${bench[@]}" --threads 1)"
        echo "$precision pytorch 1 thread        $(theirs "$torch" torch_vae.py "${peer[@]}" "${mixed_torch[@]}" --threads 1)"
        echo "$precision keras 1 thread          $(theirs "$keras" keras_vae.py --backend tensorflow "${peer[@]}" "${mixed_keras[@]}" --threads 1)"
        echo "$precision ours 2 ranks x 1 thread $(ours mpirun "${mpi[@]}" "$vae" "${bench[@]}" --threads 1)"
        echo "$precision ours 1 rank x 2 threads $(ours "$vae" "${bench[@]}" --threads 2)"
        echo "$precision pytorch 2 threads       $(theirs "$torch" torch_vae.py "${peer[@]}" "${mixed_torch[@]}" --threads 2)"
        echo "$precision keras 2 threads         $(theirs "$keras" keras_vae.py --backend tensorflow "${peer[@]}" "${mixed_keras[@]}" --threads 2)"
        [ "$precision" = bf16 ] && continue
        echo "$precision pytorch 2 channels-last $(theirs "$torch" torch_vae.py "${peer[@]}" --threads 2 --channels-last)"
        echo "$precision pytorch DDP 2 processes $(theirs "$envs/venv-torch/bin/torchrun" --standalone --nproc_per_node 2 torch_vae.py "${peer[@]}" --threads 1)"
    done
done
