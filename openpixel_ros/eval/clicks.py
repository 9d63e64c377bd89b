"""``python -m openpixel_ros.eval clicks``: NoC@85/90 and mIoU@k of a prompt engine.

    python -m openpixel_ros.eval clicks --images DIR --masks DIR [--engine NAME --model PATH]
        [--max-clicks 20] [--limit N] [--json OUT]

Images and masks are paired by file stem; ``--limit N`` keeps the first N pairs sorted by
stem. The protocol and the mask rules are in :mod:`openpixel_ros.eval.click_protocol`.
Without ``--engine`` the node's default prompt engine is used (``openpixel``, the packaged click
network; ``--engine classical`` for GrabCut).

The JSON report has the top-level keys ``engine``, ``model``, ``images``, ``noc85``,
``noc90``, ``over20_90`` (images that never reach IoU 0.90 within ``max_clicks``),
``miou_at`` (``{"1", "3", "5"}``), ``per_click_ms_median`` (also ``first_click_ms_median``,
which includes the per-frame encoder, and ``later_click_ms_median``), ``max_clicks``,
``skipped`` and ``per_image``. With ``--json`` the mIoU-versus-clicks curve is drawn beside it
(``<json>.miou_vs_clicks.png``; several reports in one picture: ``eval plot A.json B.json``).
"""
from __future__ import annotations

import time

from ..inference.ground_truth import load_ground_truth
from .click_protocol import (SCRIBBLES_AT, evaluate_sample, evaluate_scribbles, sample_record, summarize,
                             summarize_scribbles)
from .common import load_rgb, pair_by_stem, progress, write_json
from .plots import write_plots


def add_arguments(parser) -> None:
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--masks", required=True, help="folder of ground-truth masks, paired by file stem")
    parser.add_argument("--engine", help="prompt engine: classical, sam or openpixel "
                                         "(default: the node's default prompt engine)")
    parser.add_argument("--model", help="model file of the engine (sam: the image-encoder ONNX)")
    parser.add_argument("--decoder", help="sam: the prompt-decoder ONNX (default: found beside --model)")
    parser.add_argument("--device", default="cpu", help="sam: cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="sam, openpixel: ONNX Runtime threads; 0 = one per core")
    parser.add_argument("--max-clicks", type=int, default=20, help="click budget per image (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N pairs (sorted by stem)")
    parser.add_argument("--no-previous-mask", action="store_true",
                        help="do not give the engine its previous mask with each new click")
    parser.add_argument("--protocol", choices=("clicks", "scribbles"), default="clicks",
                        help="clicks: NoC and mIoU@k; scribbles: mIoU after 1, 2 and 3 strokes "
                             "(default: %(default)s)")
    parser.add_argument("--zoom-in", choices=("on", "second", "off"), default="on",
                        help="openpixel: decode around the object from the second prompt on, and at the first "
                             "when its mask is small enough (on); only from the second (second); never (off) "
                             "(default: %(default)s)")
    parser.add_argument("--refine", choices=("guided", "none"), default="guided",
                        help="openpixel: full-resolution boundaries (default: %(default)s)")
    parser.add_argument("--retry-ignored-click", choices=("on", "off"), default="on",
                        help="openpixel: decode again without the previous mask when the mask contradicts the "
                             "newest click (default: %(default)s)")
    parser.add_argument("--json", help="write the results to this JSON file")


def _engine_options(args) -> dict:
    options = {}
    if args.decoder:
        options["decoder"] = args.decoder
    if args.engine == "sam":
        options.update(device=args.device, threads=args.threads)
    if args.engine == "openpixel":
        options.update(threads=args.threads, zoom_in=args.zoom_in != "off", zoom_first=args.zoom_in == "on",
                       refine=args.refine, retry_ignored_click=args.retry_ignored_click == "on")
    return options


def run(args) -> int:
    from ..interactive import DEFAULT_PROMPT_ENGINE, DEFAULT_PROMPT_MODEL, PromptError, create_prompt_engine
    from ..engines import EngineError

    if args.max_clicks < 1:
        raise SystemExit("error: --max-clicks must be at least 1")
    args.engine = (args.engine or DEFAULT_PROMPT_ENGINE).lower()
    model = args.model or (DEFAULT_PROMPT_MODEL if args.engine == DEFAULT_PROMPT_ENGINE else None)
    try:
        pairs = pair_by_stem(args.images, args.masks, args.limit)
        engine = create_prompt_engine(args.engine, model, **_engine_options(args))
    except (FileNotFoundError, ValueError, PromptError, EngineError) as exc:
        raise SystemExit(f"error: {exc}") from None

    samples, skipped = [], []
    started = time.perf_counter()
    for index, (stem, image_path, mask_path) in enumerate(pairs, 1):
        rgb = load_rgb(image_path)
        ground_truth, ignore = load_ground_truth(mask_path)
        if ground_truth.shape != rgb.shape[:2]:
            raise SystemExit(f"error: {mask_path.name} is {ground_truth.shape[1]}x{ground_truth.shape[0]} "
                             f"but {image_path.name} is {rgb.shape[1]}x{rgb.shape[0]}")
        if not (ground_truth & ~ignore).any():
            skipped.append(stem)
            progress(f"[{index}/{len(pairs)}] {stem}: no object pixel, skipped")
            continue
        if args.protocol == "scribbles":
            sample = evaluate_scribbles(engine, rgb, ground_truth, ignore, name=stem, key=("eval", stem))
            samples.append(sample)
            progress(f"[{index}/{len(pairs)}] {stem}: IoU after 1/2/3 scribbles "
                     + " / ".join(f"{sample.iou_at(k):.3f}" for k in SCRIBBLES_AT))
            continue
        sample = evaluate_sample(engine, rgb, ground_truth, ignore, name=stem, max_clicks=args.max_clicks,
                                 feed_previous_mask=not args.no_previous_mask, key=("eval", stem))
        samples.append(sample)
        progress(f"[{index}/{len(pairs)}] {stem}: NoC85 {sample.noc(0.85, args.max_clicks)} "
                 f"NoC90 {sample.noc(0.90, args.max_clicks)} IoU@1 {sample.ious[0]:.3f}")
    if not samples:
        raise SystemExit("error: no image with an object to evaluate")
    options = {k: v for k, v in _engine_options(args).items()
               if k in ("zoom_in", "zoom_first", "refine", "retry_ignored_click")}
    model = model or getattr(engine, "model_path", None)  # the packaged file an engine loaded by default
    head = {"engine": args.engine, "model": str(model) if model else None, "protocol": args.protocol, **options}
    if "retry_ignored_click" in options:  # how many prompts took the second pass's mask (a click was ignored)
        head["retries"] = int(sum(t.get("retry", 0.0) for sample in samples for t in sample.timings))
    if args.protocol == "scribbles":
        report = {**head, **summarize_scribbles(samples), "skipped": skipped,
                  "wall_s": round(time.perf_counter() - started, 1),
                  "per_image": [{"name": s.name, "ious": [round(float(v), 4) for v in s.ious],
                                 "scribbles": [[list(map(list, pts)), label] for pts, label in s.clicks]}
                                for s in samples]}
        for k, v in report["miou_at_scribbles"].items():
            print(f"mIoU after {k} scribble{'s' if k != '1' else ''}  {v:.4f}")
        print(f"per-scribble ms (median)  {report['per_scribble_ms_median']}")
    else:
        report = {**head, **summarize(samples, args.max_clicks),
                  "previous_mask": not args.no_previous_mask, "skipped": skipped,
                  "wall_s": round(time.perf_counter() - started, 1),
                  "per_image": [sample_record(s, args.max_clicks) for s in samples]}
        _print_table(report)
    if args.json:
        write_json(args.json, report)
        progress(f"wrote {args.json}")
        write_plots(report, args.json, log=progress)  # the mIoU-vs-clicks curve beside it
    return 0


def _print_table(report: dict) -> None:
    miou = report["miou_at"]
    rows = [("engine", report["engine"]), ("images", report["images"]),
            ("NoC@85", f"{report['noc85']:.2f}"), ("NoC@90", f"{report['noc90']:.2f}"),
            (f"never 90 within {report['max_clicks']}", report["over20_90"])]
    rows += [(f"mIoU@{k}", f"{v:.4f}") for k, v in miou.items()]
    rows += [("per-click ms (median)", report["per_click_ms_median"]),
             ("first-click ms (median)", report["first_click_ms_median"]),
             ("later-click ms (median)", report["later_click_ms_median"])]
    if "retries" in report:
        rows.append(("ignored clicks decoded again", report["retries"]))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
