#!/usr/bin/env bash
# Turn a finished road training run into the packaged default model, and measure it.
#
#   scripts/ship_default_model.sh [CHECKPOINT] [RUN]
#       # defaults: out/train/road_v2_trainval/last.pt and road_v2_trainval (the run's config/train/$RUN.yaml)
#
# 1. exports the FP32 encoder and the INT8 encoder into openpixel_ros/models/ (INT8 calibrated on 64
#    CamVid train images), with the licence, the default mask classes and the source
#    (config/train/$RUN.yaml) in the metadata. The road model ships without a click decoder: a road run
#    trains no click head (clicks.enabled: false), so the export writes the encoder alone, a checkpoint
#    whose run did train one is refused, and the export removes any stale openpixel_road.decoder.* (the
#    click network, openpixel_click, answers clicks);
# 2. copies the run's CSV log beside its config (config/train/$RUN.csv);
# 3. measures size, latency and accuracy per format (bench/bench_default_model.py) and the
#    lighting table with conditioning on and off (bench/results/lighting_openpixel_road.json).
# Needs ../shared (CamVid) and the training extras (torch).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINT="${1:-out/train/road_v2_trainval/last.pt}"
RUN="${2:-road_v2_trainval}"
PY=.venv/bin/python
CAMVID=../shared/datasets/camvid
MODELS=openpixel_ros/models

if [ ! -f "config/train/$RUN.yaml" ]; then
    echo "error: no config/train/$RUN.yaml: RUN names the training run's config" >&2
    exit 2
fi
$PY - "$CHECKPOINT" <<'PYEOF'
import sys
import torch
from openpixel_ros.export.onnx_export import click_head_trained
if click_head_trained(torch.load(sys.argv[1], map_location="cpu", weights_only=True)):
    sys.exit(f"error: {sys.argv[1]} comes from a run that trained the click head; the road model ships "
             "without a click decoder (the click network answers clicks)")
PYEOF
$PY -m openpixel_ros.export --checkpoint "$CHECKPOINT" --onnx "$MODELS/openpixel_road.onnx" \
    --variants int8 --calib-images "$CAMVID/train" --calib-count 64 \
    --metadata 'foreground_classes=["Car","Pedestrian","Bicyclist"]' \
    --metadata "license=CC BY-NC 4.0 (weights trained on CamVid): non-commercial research use only" \
    --metadata "source=OpenPixel road, trained by openpixel_ros from config/train/$RUN.yaml; see docs/model_card.md"
cp "$(dirname "$CHECKPOINT")/log.csv" "config/train/$RUN.csv"
$PY bench/bench_default_model.py
$PY -m openpixel_ros.eval lighting --images "$CAMVID/val" --labels "$CAMVID/valannot" --ignore-index 11 \
    --conditioning --json bench/results/lighting_openpixel_road.json
