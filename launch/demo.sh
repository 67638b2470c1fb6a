#!/usr/bin/env bash
# The whole product in a few minutes: set up, make a dataset (CelebA if CELEBA_DIR points at it,
# otherwise synthetic faces the project draws itself), train on every core the batch can use
# (launch/train.sh chooses), and show where the pictures are. Everything goes to demo/ (override with DEMO_DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/launch/setup.sh"
vae="$root/.build/release/vae"
out="${DEMO_DIR:-$root/demo}"
mkdir -p "$out"

if [ -n "${CELEBA_DIR:-}" ] && [ -f "$CELEBA_DIR/list_attr_celeba.txt" ]; then
    data="$out/celeba.vaeds"
    [ -f "$data" ] || "$vae" prepare --celeba "$CELEBA_DIR" --out "$data"
    epochs=${DEMO_EPOCHS:-3}
else
    data="$out/faces.vaeds"
    [ -f "$data" ] || "$vae" synth --count 4096 --out "$data"
    epochs=${DEMO_EPOCHS:-6}
fi
"$vae" inspect "$data" --grid "$out/dataset.png"

run="$out/run-$(date +%Y%m%d-%H%M%S)"
"$root/launch/train.sh" -- --data "$data" --out "$run" --epochs "$epochs" --log-every 10
echo
echo "demo: dataset grid      $out/dataset.png"
echo "demo: reconstructions   $(ls "$run"/reconstructions-*.png | tail -1)  (top row: inputs, bottom: reconstructions)"
echo "demo: samples           $(ls "$run"/samples-*.png | tail -1)"
echo "demo: metrics           $run/metrics.jsonl"
