#!/usr/bin/env bash
# The main job on bundled data: train, sample with CAS and the final denoising step.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR=${WORKDIR:-runs/quickstart}
asm-train --gin_file=gin_configs/toy2d_swissroll.gin --workdir="$WORKDIR"
asm-sample --workdir="$WORKDIR" --sampler=cas --seeds=0-4999 --batch_size=5000 --output_dir="$WORKDIR/samples"
echo
echo "workdir (checkpoints, config.gin): $WORKDIR"
echo "samples: $WORKDIR/samples/final.png, $WORKDIR/samples/denoised.png, $WORKDIR/samples/samples.npz"
echo "tensorboard: tensorboard --logdir $WORKDIR/tensorboard"
