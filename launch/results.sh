#!/usr/bin/env bash
# The README's results section, regenerated: prepares CelebA from CELEBA_DIR (the 969-image sample,
# or the full set), trains the reference model (--preset seed) on its training partition in one
# process on every core, draws the face grids of held-out images, measures the attribute edits with
# 'vae judge', and writes the pictures and results.txt (losses, timings, judge tables) to
# docs/results/. Work files (dataset, run directory) go to results-work/ (RESULTS_WORK to move it).
#
#   launch/results.sh CELEBA_DIR [EPOCHS]      # EPOCHS: 200 (about 5 minutes on the 2-core machine)
#
# The traversed and edited face is image 820 of the sample's file (test partition, labelled without
# Smiling, Eyeglasses, Male and Blond_Hair); on another CelebA file, set RESULTS_IMAGE to a position
# in that file. The pictures are kept small (about 400 KB in all) for the repository.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
celeba="${1:?usage: launch/results.sh CELEBA_DIR [EPOCHS]}"
epochs="${2:-200}"
image="${RESULTS_IMAGE:-820}"
work="${RESULTS_WORK:-$root/results-work}"
docs="$root/docs/results"
attributes=(--attribute Smiling --attribute Eyeglasses --attribute Male --attribute Blond_Hair)

"$root/launch/setup.sh"
vae="$root/.build/release/vae"
rm -rf "$work" "$docs" && mkdir -p "$work" "$docs"
data="$work/celeba64.vaeds"
run="$work/run"
text="$docs/results.txt"

"$vae" prepare --celeba "$celeba" --out "$data" | tail -1
started=$(date +%s)
"$vae" train --data "$data" --out "$run" --epochs "$epochs" --log-every 20 > "$work/train.log"
seconds=$(( $(date +%s) - started ))
load="$(cut -d' ' -f1-3 /proc/loadavg)"  # the machine's load over the training's last minutes

"$vae" reconstruct "$run" --data "$data" --partition test --count 6 --columns 6 --out "$docs/reconstructions.png" > "$work/test.txt"
"$vae" reconstruct "$run" --data "$data" --partition train --count 1 --out "$work/unused.png" > "$work/train.txt"
"$vae" reconstruct "$run" --data "$data" --partition valid --count 1 --out "$work/unused.png" > "$work/valid.txt"
"$vae" sample "$run" --count 8 --out "$docs/samples.png" > /dev/null
"$vae" traverse "$run" --data "$data" --image "$image" --dims auto --count 3 --range -3,3 --steps 5 \
    --out "$docs/traverse.png" > "$work/traverse.txt"
"$vae" attributes "$run" --data "$data" --out "$work/directions.npy" > /dev/null
"$vae" edit "$run" --data "$data" --image "$image" "${attributes[@]}" --directions "$work/directions.npy" \
    --strengths -1,0,1,2 --out "$docs/edit.png" > /dev/null
cp "$run/loss.png" "$docs/loss.png"
for strength in 1 2; do
    "$vae" judge "$run" --data "$data" "${attributes[@]}" --directions "$work/directions.npy" --strength "$strength" \
        > "$work/judge-$strength.txt"
done

{
    echo "launch/results.sh $(basename "$celeba") $epochs, $(date -u +%Y-%m-%d), $(nproc) cores"
    echo "vae train --epochs $epochs: ${seconds} s wall clock (load average at its end: $load); its last lines:"
    tail -2 "$work/train.log"
    echo
    echo "final weights, mean per-image loss (sampled z, as training computes it):"
    cat "$work/train.txt" "$work/valid.txt" "$work/test.txt" | grep '^partition'
    echo
    echo "vae traverse --dims auto --count 3 (image $image):"
    grep 'dimensions by KL' "$work/traverse.txt"
    for strength in 1 2; do
        echo
        echo "vae judge ${attributes[*]} --strength $strength:"
        cat "$work/judge-$strength.txt"
    done
} > "$text"
cat "$text"
du -ch "$docs"/*.png | tail -1
