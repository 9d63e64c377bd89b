#!/usr/bin/env bash
# Turn a finished click training run (config/train/click.yaml) into the packaged click decoder, and measure it.
#
#   scripts/ship_click_model.sh [CHECKPOINT]      # default: out/train/click/last.pt (the run's end, not a pick)
#
# 1. exports the checkpoint's pair and checks that its encoder is the packaged road encoder (the click run
#    keeps it frozen), then installs only the decoder: openpixel_ros/models/openpixel_road.decoder.{onnx,json};
# 2. copies the run's CSV log beside its config (config/train/click.csv);
# 3. measures it on GrabCut (never trained on) with the standard click protocol: zoom-in and guided
#    boundaries on and off, the scribble protocol for openpixel and classical, and the learning curve of
#    the kept step checkpoints (bench/results/clicks_grabcut_openpixel*.json, click_learning_curve.json).
# Needs ../shared and the training extras (torch).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINT="${1:-out/train/click/last.pt}"
PY=.venv/bin/python
GRABCUT=../shared/datasets/grabcut
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

$PY -m openpixel_ros.export --checkpoint "$CHECKPOINT" --onnx "$TMP/openpixel_road.onnx" \
    --metadata 'foreground_classes=["Car","Pedestrian","Bicyclist"]' \
    --metadata "license=CC BY-NC 4.0 (CamVid) and research-only data (DUTS, ECSSD, DAVIS): non-commercial research use only" \
    --metadata "source=OpenPixel road; click decoder trained by openpixel_ros from config/train/click.yaml; see docs/model_card.md"
$PY - "$TMP/openpixel_road.encoder.onnx" openpixel_ros/models/openpixel_road.encoder.onnx <<'PYEOF'
import sys
import numpy as np
import onnx
from onnx import numpy_helper
new, shipped = (onnx.load(p) for p in sys.argv[1:3])
a = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
b = {t.name: numpy_helper.to_array(t) for t in shipped.graph.initializer}
if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k]) for k in a):
    sys.exit("error: the click checkpoint's encoder differs from the packaged encoder; ship both or retrain")
print(f"encoder: {len(a)} weight tensors identical to the packaged encoder")
PYEOF
cp "$TMP/openpixel_road.decoder.onnx" "$TMP/openpixel_road.decoder.json" openpixel_ros/models/
cp "$(dirname "$CHECKPOINT")/log.csv" config/train/click.csv

eval_clicks() {  # name, extra args
    local name="$1"; shift
    $PY -m openpixel_ros.eval clicks --images "$GRABCUT/images" --masks "$GRABCUT/masks" --threads 2 \
        --json "bench/results/$name.json" "$@"
}
eval_clicks clicks_grabcut_openpixel --engine openpixel
eval_clicks clicks_grabcut_openpixel_no_zoom --engine openpixel --zoom-in off
eval_clicks clicks_grabcut_openpixel_bilinear --engine openpixel --refine none
eval_clicks clicks_grabcut_openpixel_no_zoom_bilinear --engine openpixel --zoom-in off --refine none
eval_clicks scribbles_grabcut_openpixel --engine openpixel --protocol scribbles
eval_clicks scribbles_grabcut_classical --engine classical --protocol scribbles
$PY scripts/click_learning_curve.py --run "$(dirname "$CHECKPOINT")"
