#!/usr/bin/env bash
# Turn a finished click-network run (config/train/click_network.yaml) into the packaged click network,
# and measure it.
#
#   scripts/ship_click_network.sh [CHECKPOINT [CONFIG]]
#       CHECKPOINT default: out/train/click_network/last.pt (the run's end, not a pick)
#       CONFIG default: click_network (config/train/CONFIG.yaml, the run's configuration)
#   SIZE=384 scripts/ship_click_network.sh ...      # the network's square input side (default 384)
#
# 1. exports the checkpoint at SIZE x SIZE with its licence and source into openpixel_ros/models/openpixel_click.{onnx,json};
# 2. copies the run's CSV log beside its config (config/train/CONFIG.csv);
# 3. measures it on GrabCut (never trained on) with the standard click protocol (bench/results/
#    clicks_grabcut_clicknet*.json), on GrabCut scenes shrunk to 1/3 (clicks_grabcut_small_clicknet.json),
#    the scribble protocol (scribbles_grabcut_clicknet.json), the road-scene objects held out from training
#    (CamVid val, clicks_camvid_objects_clicknet.json) and the learning curve of the kept step checkpoints
#    (CONFIG_learning_curve.json).
# Needs ../shared and the training extras (torch).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKPOINT="${1:-out/train/click_network/last.pt}"
CONFIG="${2:-click_network}"
SIZE="${SIZE:-384}"
[[ -f "config/train/$CONFIG.yaml" ]] || { echo "error: no config/train/$CONFIG.yaml" >&2; exit 2; }
PY=.venv/bin/python
GRABCUT=../shared/datasets/grabcut
SMALL=out/grabcut_small
ROAD=out/camvid_val_objects
LICENSE="research-only data (DUTS: ImageNet terms; ECSSD; DAVIS; CamVid CC BY-NC 4.0) and Google's DeepLabV3-MobileNetV2 VOC weights (Apache-2.0): non-commercial research use only"

$PY -m openpixel_ros.export.click_network --checkpoint "$CHECKPOINT" --onnx openpixel_ros/models/openpixel_click.onnx --size "$SIZE" \
    --metadata "license=$LICENSE" \
    --metadata "source=OpenPixel click network trained by openpixel_ros from config/train/$CONFIG.yaml; see docs/model_card.md"
cp "$(dirname "$CHECKPOINT")/log.csv" "config/train/$CONFIG.csv"

eval_clicks() {  # name, images folder, masks folder, extra args
    local name="$1" images="$2" masks="$3"; shift 3
    $PY -m openpixel_ros.eval clicks --images "$images" --masks "$masks" --threads 2 \
        --json "bench/results/$name.json" "$@"
}
eval_clicks clicks_grabcut_clicknet "$GRABCUT/images" "$GRABCUT/masks" --engine openpixel
[[ "${SHIP_STOP_AFTER_MAIN:-0}" == 1 ]] && exit 0  # (the headline figure alone, e.g. before other jobs load the CPU)
eval_clicks clicks_grabcut_clicknet_no_zoom "$GRABCUT/images" "$GRABCUT/masks" --engine openpixel --zoom-in off
eval_clicks clicks_grabcut_clicknet_bilinear "$GRABCUT/images" "$GRABCUT/masks" --engine openpixel --refine none
eval_clicks scribbles_grabcut_clicknet "$GRABCUT/images" "$GRABCUT/masks" --engine openpixel --protocol scribbles
[[ -d "$SMALL/images" ]] || $PY scripts/make_small_object_set.py --out "$SMALL"
eval_clicks clicks_grabcut_small_clicknet "$SMALL/images" "$SMALL/masks" --engine openpixel
eval_clicks clicks_grabcut_small_clicknet_no_zoom "$SMALL/images" "$SMALL/masks" --engine openpixel --zoom-in off
[[ -d "$ROAD/images" ]] || $PY scripts/make_camvid_object_set.py --out "$ROAD"
eval_clicks clicks_camvid_objects_clicknet "$ROAD/images" "$ROAD/masks" --engine openpixel
$PY scripts/click_learning_curve.py --run "$(dirname "$CHECKPOINT")" --json "bench/results/${CONFIG}_learning_curve.json"
