#!/usr/bin/env bash
# The main job on bundled data: train on the 2-D swiss roll, sample with CAS and the final denoising step,
# export the sampler as a SavedModel for TF Serving, and measure the samples against real points.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR=${WORKDIR:-runs/quickstart}
EXPORT_DIR=${EXPORT_DIR:-runs/export}
asm-train --gin_file=gin_configs/toy2d_swissroll.gin --workdir="$WORKDIR"
asm-sample --workdir="$WORKDIR" --sampler=cas --seeds=0-4999 --batch_size=5000 --output_dir="$WORKDIR/samples"
asm-export --workdir="$WORKDIR" --export_dir="$EXPORT_DIR" --name=swissroll
asm-eval --workdir="$WORKDIR" --metric=toy2d --num_samples=5000 --batch_size=5000
cat <<DONE

workdir (checkpoints, config.gin): $WORKDIR
samples (CAS; final and denoised): $WORKDIR/samples/final.png, $WORKDIR/samples/denoised.png, samples.npz
SavedModel for TF Serving:          $EXPORT_DIR/swissroll/<version>
evaluation (Distance_total):       $WORKDIR/eval/
tensorboard:                        tensorboard --logdir $WORKDIR/tensorboard
DONE
