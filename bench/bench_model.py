"""OpenPixel (untrained) vs the DeepLabV3-MobileNetV2 reference: CPU latency, parameters, MACs, file size.

    .venv/bin/python bench/bench_model.py [--repeats 20] [--threads 2]

Everything runs in ONNX Runtime, fp32, on the CPU with ``--threads`` intra-op
threads, at 480x360 and 640x480:

* per frame: OpenPixel's encoder (image + conditioning -> logits and cached
  features), DeepLab's whole graph (at the same size, and at its native 257x257);
* per click: OpenPixel's decoder graph alone, and a whole click through the
  "openpixel" prompt engine (prompt rendering + decoder + upsampling to the frame).

Needs torch (to build and export the models). DeepLab rows need ../shared;
without it they are left out. Writes bench/results/model.json and prints a table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_table, time_ms, write_results  # noqa: E402

DEEPLAB_TFLITE = SHARED / "models" / "deeplabv3_mnv2_voc" / "deeplabv3_257_mv_gpu.tflite"
SIZES = ((360, 480), (480, 640))  # (height, width)


def session(path, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    from openpixel_ros.export.onnx_export import export_openpixel
    from openpixel_ros.interactive import ClickPrompt
    from openpixel_ros.interactive.openpixel_engine import OpenPixelPromptEngine
    from openpixel_ros.model.compute_cost import count_macs, parameter_count
    from openpixel_ros.model.openpixel import EncoderGraph, ModelInfo, OpenPixel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = OpenPixel().eval()
    pretrained = DEEPLAB_TFLITE.is_file()
    if pretrained:
        model.load_pretrained_backbone(DEEPLAB_TFLITE)
    k = model.config.conditioning_size
    results = {"threads": args.threads, "repeats": args.repeats, "onnxruntime": onnxruntime.__version__,
               "torch": torch.__version__, "openpixel": {
                   "parameters": parameter_count(model),
                   "parameters_by_part": {name: parameter_count(getattr(model, name)) for name in
                                          ("backbone", "pyramid", "semantic_head", "decoder", "film")
                                          if getattr(model, name) is not None},
                   "pretrained_backbone": pretrained, "sizes": {}},
               "deeplab": None}
    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deeplab = None
        if pretrained:
            from openpixel_ros.export.deeplab import export_deeplab_onnx
            from openpixel_ros.model.deeplab import INPUT_SIZE, deeplab_from_tflite
            deeplab = deeplab_from_tflite(DEEPLAB_TFLITE)
            results["deeplab"] = {"parameters": parameter_count(deeplab), "sizes": {}}
            native = tmp / "deeplab_257.onnx"
            export_deeplab_onnx(DEEPLAB_TFLITE, native)
            x = rng.uniform(-1, 1, (1, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
            s = session(native, args.threads)
            entry = {"frame": time_ms(lambda: s.run(None, {"image": x}), args.repeats),
                     "macs": count_macs(deeplab, torch.from_numpy(x)), "onnx_bytes": native.stat().st_size}
            results["deeplab"]["sizes"]["257x257"] = entry
            rows.append(["DeepLab ref", "257x257", entry["frame"]["median_ms"], "-", "-",
                         f"{entry['macs'] / 1e9:.2f}", f"{entry['onnx_bytes'] / 1e6:.2f}"])

        for h, w in SIZES:
            label = f"{w}x{h}"
            info = ModelInfo(input_height=h, input_width=w)
            encoder, decoder = export_openpixel(model, info, tmp / f"op_{label}.onnx")
            image = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
            conditioning = np.zeros((1, k), np.float32)
            enc, dec = session(encoder, args.threads), session(decoder, args.threads)
            logits, f4, f8 = enc.run(None, {"image": image, "conditioning": conditioning})
            prompts = np.zeros((1, 4, *f4.shape[2:]), np.float32)
            prompts[0, 0, f4.shape[2] // 2, f4.shape[3] // 2] = 1.0
            frame_t = time_ms(lambda: enc.run(None, {"image": image, "conditioning": conditioning}), args.repeats)
            decoder_t = time_ms(lambda: dec.run(None, {"features_s4": f4, "features_s8": f8, "prompts": prompts}),
                              args.repeats)
            engine = OpenPixelPromptEngine.from_files(encoder, threads=args.threads)
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            engine.set_image(rgb, key=label)
            prompt = ClickPrompt.from_lists([(w / 2, h / 2), (w / 5, h / 5)], [1, 0], image_size=(h, w))
            click_t = time_ms(lambda: engine.predict(prompt), args.repeats)
            engine.close()
            with torch.no_grad():
                t_image, t_cond = torch.from_numpy(image), torch.from_numpy(conditioning)
                encoder_macs = count_macs(EncoderGraph(model), t_image, t_cond)
                decoder_macs = count_macs(model.decoder, torch.from_numpy(f4), torch.from_numpy(f8),
                                          torch.from_numpy(prompts))
            entry = {"frame": frame_t, "click_decoder": decoder_t, "click_engine": click_t,
                     "encoder_macs": encoder_macs, "decoder_macs": decoder_macs,
                     "encoder_onnx_bytes": encoder.stat().st_size, "decoder_onnx_bytes": decoder.stat().st_size}
            results["openpixel"]["sizes"][label] = entry
            rows.append(["OpenPixel", label, frame_t["median_ms"], decoder_t["median_ms"], click_t["median_ms"],
                         f"{encoder_macs / 1e9:.2f} + {decoder_macs / 1e9:.2f}",
                         f"{(entry['encoder_onnx_bytes'] + entry['decoder_onnx_bytes']) / 1e6:.2f}"])
            if deeplab is not None:
                path = tmp / f"deeplab_{label}.onnx"
                export_deeplab_onnx(DEEPLAB_TFLITE, path, h, w)
                s = session(path, args.threads)
                entry = {"frame": time_ms(lambda: s.run(None, {"image": image}), args.repeats),
                         "macs": count_macs(deeplab, torch.from_numpy(image)), "onnx_bytes": path.stat().st_size}
                results["deeplab"]["sizes"][label] = entry
                rows.append(["DeepLab ref", label, entry["frame"]["median_ms"], "-", "-",
                             f"{entry['macs'] / 1e9:.2f}", f"{entry['onnx_bytes'] / 1e6:.2f}"])

    path = write_results("model", results)
    print_table(f"Model latency, ONNX Runtime fp32 CPU, {args.threads} threads, median of {args.repeats} "
                f"(OpenPixel: {results['openpixel']['parameters']:,} parameters"
                + (f"; DeepLab: {results['deeplab']['parameters']:,}" if results["deeplab"] else "") + ")",
                ["model", "input WxH", "frame ms", "click decoder ms", "click engine ms", "GMACs", "ONNX MB"], rows)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
