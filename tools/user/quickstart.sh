#!/usr/bin/env bash
# The main job on bundled data: train a small UNet adversarially on scikit-learn's digits (16x16), sample
# with CAS and the final denoising step, export the sampler as a SavedModel for TF Serving, and measure the
# samples with the bundled digit classifier (FDD against the held-out digits beside its real-digit floor and
# blur ladder, KID, precision/recall, mode coverage). WORKDIR and EXPORT_DIR may be set; running again resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKDIR=${WORKDIR:-runs/quickstart}
EXPORT_DIR=${EXPORT_DIR:-runs/export}
NUM_SAMPLES=${NUM_SAMPLES:-500}
START=$(date +%s)
asm-train --gin_file=gin_configs/digits_adv.gin --workdir="$WORKDIR"
asm-sample --workdir="$WORKDIR" --sampler=cas --seeds=0-$((NUM_SAMPLES - 1)) --batch_size=500 \
    --output_dir="$WORKDIR/samples"
asm-export --workdir="$WORKDIR" --export_dir="$EXPORT_DIR" --name=digits
asm-eval --workdir="$WORKDIR" --metric=fdd --samples="$WORKDIR/samples"
cat <<DONE

done in $(( $(date +%s) - START )) s
workdir (checkpoints, config.gin):  $WORKDIR
samples (CAS, final and denoised):  $WORKDIR/samples/final.png, $WORKDIR/samples/denoised.png, samples.npz
                                    ($NUM_SAMPLES images; NUM_SAMPLES may be set)
SavedModel for TF Serving:          $EXPORT_DIR/digits/<version>
sample quality (raw and denoised):  $WORKDIR/eval/fdd_cas_n1_N$NUM_SAMPLES/
tensorboard:                        tensorboard --logdir $WORKDIR/tensorboard
DONE
