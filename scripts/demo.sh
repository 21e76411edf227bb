#!/usr/bin/env bash
# The fresh-machine demo: draw synthetic faces, train a small network on
# them, evaluate it on the held-out test split and predict a few faces.
# Everything goes to ${DEMO_DIR:-demo/}.
set -euo pipefail
cd "$(dirname "$0")/.."
pasm=build/pasm
out=${DEMO_DIR:-demo}
rm -rf "$out"
mkdir -p "$out"
echo "== pasm synth: 2100 synthetic faces (train/val/test)"
$pasm synth --out "$out/faces" --count 2100 --seed 1
echo
echo "== pasm train: ResNet-18 width 16"
$pasm train --data "$out/faces" --width 16 --epochs "${DEMO_EPOCHS:-8}" --batch 32 --lr 0.05 \
  --seed 1 --out "$out/model.safetensors"
echo
echo "== pasm eval on the test split"
$pasm eval --model "$out/model.safetensors" --data "$out/faces" --split test
echo
echo "== pasm predict: a few test faces"
$pasm predict --model "$out/model.safetensors" \
  "$out"/faces/test/happy/$(ls "$out/faces/test/happy" | head -n 1) \
  "$out"/faces/test/surprise/$(ls "$out/faces/test/surprise" | head -n 1) \
  "$out"/faces/test/sad/$(ls "$out/faces/test/sad" | head -n 1)
