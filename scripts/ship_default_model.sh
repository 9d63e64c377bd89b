#!/usr/bin/env bash
# Turn a finished road training run into the packaged default model, and measure it.
#
#   scripts/ship_default_model.sh [CHECKPOINT]      # default: out/train/road/best.pt
#
# 1. exports the FP32 encoder + decoder and the INT8 encoder into openpixel_ros/models/ (INT8
#    calibrated on 64 CamVid train images), with the licence and default mask classes in the metadata;
# 2. copies the run's CSV log beside its config (config/train/road.csv);
# 3. measures size, latency and accuracy per format (bench/bench_default_model.py) and the
#    lighting table with conditioning on and off (bench/results/lighting_openpixel_road.json).
# Needs ../shared (CamVid) and the training extras (torch).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINT="${1:-out/train/road/best.pt}"
PY=.venv/bin/python
CAMVID=../shared/datasets/camvid

$PY -m openpixel_ros.export --checkpoint "$CHECKPOINT" --onnx openpixel_ros/models/openpixel_road.onnx \
    --variants int8 --calib-images "$CAMVID/train" --calib-count 64 \
    --metadata 'foreground_classes=["Car","Pedestrian","Bicyclist"]' \
    --metadata "license=CC BY-NC 4.0 (weights trained on CamVid): non-commercial research use only" \
    --metadata "source=OpenPixel road, trained by openpixel_ros from config/train/road.yaml; see docs/model_card.md"
cp "$(dirname "$CHECKPOINT")/log.csv" config/train/road.csv
$PY bench/bench_default_model.py
$PY -m openpixel_ros.eval lighting --images "$CAMVID/val" --labels "$CAMVID/valannot" --ignore-index 11 \
    --conditioning --json bench/results/lighting_openpixel_road.json
