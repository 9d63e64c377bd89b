"""openpixel_bag: segment a camera topic of a rosbag2 file offline, without ROS.

    openpixel_bag drive.mcap_dir segmented --topic /camera/image_raw [--model openpixel_road]
        [--labels-topic /camera/labels --ignore-index 11] [--storage mcap|sqlite3]

Reads the bag (mcap or sqlite3, through ``rosbags``), runs the node's per-frame pipeline
(:class:`Segmentor`: lighting adaptation, engine, label/mask) on every message of the image topic
(``sensor_msgs/Image`` or ``CompressedImage``), and writes a new bag with the input topic and
``<prefix>/label``, ``/mask``, ``/color``, ``/overlay``, each with the input's header and bag time,
as the node would publish them. Every ``sensor_msgs/CameraInfo`` topic is copied unchanged: the
outputs keep the frames' stamps, so each pairs with its camera model by stamp. A JSON summary goes
beside it: input and processing rates, latency percentiles, each class's share of the pixels and,
with ``--labels-topic`` (mono8/mono16 class ids, matched to frames by header stamp), mIoU and per-class IoU.

A frame that cannot be segmented (corrupt data, a bad encoding, more pixels than
``--max-image-pixels``, an engine error) is skipped and counted, as the node does: the bag is
finished and the summary lists ``bad_frames`` with the first errors. Frames and labels waiting for
their partner are held in a buffer of :data:`PAIRING_BUFFER` each (oldest out first, counted as
``unpaired_frames``/``unpaired_labels``), so a labels topic that never matches cannot grow memory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .image_header import DEFAULT_MAX_PIXELS, check_pixels
from .visualize import OUTPUTS, render_outputs

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
OVERLAY_ALPHA = 0.5  # the node's overlay_alpha default


PAIRING_BUFFER = 64  # frames (and label images) waiting for their partner at most


class BagError(RuntimeError):
    """A bag that cannot be processed as asked; one line for the console."""


class _Bounded(dict):
    """A dict that holds at most ``capacity`` entries: putting one more drops the oldest (counted)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.evicted = max(1, int(capacity)), 0

    def put(self, key, value) -> None:
        self.pop(key, None)
        if len(self) >= self.capacity:
            del self[next(iter(self))]
            self.evicted += 1
        self[key] = value


class _BadFrames:
    """Messages that could not be used, counted; the first few errors kept for the summary."""

    def __init__(self, keep: int = 5):
        self.frames = self.labels = 0
        self.errors, self._keep = [], keep

    def add(self, kind: str, timestamp: int, exc: Exception) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.errors) < self._keep:
            from .log_text import bounded
            self.errors.append(bounded(f"{kind[:-1]} at bag time {timestamp}: {type(exc).__name__}: {exc}"))

    @property
    def first(self) -> str:
        return self.errors[0] if self.errors else ""


def _percentiles(values: Sequence[float]) -> dict:
    if not len(values):
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)}


def _stamp_key(header) -> tuple:
    return header.stamp.sec, header.stamp.nanosec


class _Progress:
    """A status line on stderr about once a second: carriage return on a terminal, lines otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.started, self.last = total, stream, time.monotonic(), 0.0
        self.tty = stream.isatty()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 1.0:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        text = f"openpixel_bag: {done}/{self.total} frames, {rate:.1f} frames/s"
        end = "\n" if final or not self.tty else ""
        print(("\r" if self.tty else "") + text, end=end, file=self.stream, flush=True)


class BagSegmenter:
    """Segments one image topic of a bag into a new bag; :meth:`run` returns the summary dict."""

    def __init__(self, segmentor, typestore=None, max_pixels: int = DEFAULT_MAX_PIXELS):
        from rosbags.typesys import Stores, get_typestore
        self.segmentor = segmentor
        self.max_pixels = max_pixels  # frames declaring more are bad frames, refused before decoding
        self.typestore = typestore or get_typestore(Stores.ROS2_KILTED)
        self.palette = segmentor.contract.color_table()

    # -- messages ---------------------------------------------------------------------
    def _decode(self, msg, msgtype: str) -> np.ndarray:
        from .image_codec import decode_compressed_rgb8, decode_raw_rgb8
        if msgtype == COMPRESSED_TYPE:
            return decode_compressed_rgb8(msg.format, msg.data, self.max_pixels)
        check_pixels(msg.width, msg.height, self.max_pixels, f"{msg.encoding} frame")
        return decode_raw_rgb8(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                               bytes(msg.data))

    def _image(self, array: np.ndarray, header, encoding: str):
        array = np.ascontiguousarray(array)
        image_type = self.typestore.types[IMAGE_TYPE]
        return image_type(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding,
                          is_bigendian=0, step=array.strides[0], data=array.view(np.uint8).ravel())

    def _labels_of(self, msg) -> np.ndarray:
        from .image_codec import decode_raw
        if msg.encoding not in ("mono8", "mono16", "8UC1", "16UC1"):
            raise BagError(f"ground-truth labels must be mono8/mono16 class ids, got {msg.encoding!r}")
        return decode_raw(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), bytes(msg.data))

    # -- the pass over the bag ----------------------------------------------------------
    def run(self, input_bag: Path, output_bag: Path, topic: str, *, prefix: str = "/openpixel",
            storage: str = "mcap", labels_topic: Optional[str] = None, ignore_index: Optional[int] = None,
            outputs: Sequence[str] = OUTPUTS, copy_input: bool = True, max_frames: int = 0,
            progress: bool = True, pairing_buffer: int = PAIRING_BUFFER) -> dict:
        from rosbags.highlevel import AnyReader
        from rosbags.rosbag2 import StoragePlugin, Writer

        from .inference.confusion_matrix import ConfusionMatrix

        contract = self.segmentor.contract
        with AnyReader([Path(input_bag)], default_typestore=self.typestore) as reader:
            image_connections = [c for c in reader.connections if c.topic == topic]
            if not image_connections:
                topics = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
                raise BagError(f"topic {topic} is not in {input_bag}; its topics: {topics}")
            msgtype = image_connections[0].msgtype
            if msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
                raise BagError(f"{topic} carries {msgtype}, not {IMAGE_TYPE} or {COMPRESSED_TYPE}")
            label_connections = []
            if labels_topic:
                label_connections = [c for c in reader.connections if c.topic == labels_topic]
                if not label_connections:
                    raise BagError(f"labels topic {labels_topic} is not in {input_bag}")
            info_connections = [c for c in reader.connections if c.msgtype == CAMERA_INFO_TYPE]
            total = sum(c.msgcount for c in image_connections)
            if max_frames:
                total = min(total, max_frames)

            storage_plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
            confusion = ConfusionMatrix(contract.num_classes, ignore_index) if labels_topic else None
            # stamp -> labels; stamp -> predicted labels awaiting theirs. Each holds at most
            # pairing_buffer entries (oldest out first): a labels topic whose stamps never match
            # the frames' must not grow memory with the bag.
            ground_truth, pending = _Bounded(pairing_buffer), _Bounded(pairing_buffer)
            class_pixels = np.zeros(contract.num_classes, np.int64)
            engine_ms, frame_ms, bag_times = [], [], []
            frames = labelled = 0
            bad = _BadFrames()
            bar = _Progress(total) if progress else None
            started = time.perf_counter()
            with Writer(Path(output_bag), version=9, storage_plugin=storage_plugin) as writer:
                input_out = writer.add_connection(topic, msgtype, typestore=self.typestore) if copy_input else None
                info_out = {t: writer.add_connection(t, CAMERA_INFO_TYPE, typestore=self.typestore)
                            for t in sorted({c.topic for c in info_connections})}
                out = {name: writer.add_connection(f"{prefix.rstrip('/')}/{name}", IMAGE_TYPE,
                                                   typestore=self.typestore) for name in outputs}

                def score(stamp, predicted):
                    nonlocal labelled
                    confusion.update(ground_truth.pop(stamp), predicted)
                    labelled += 1

                for connection, timestamp, rawdata in reader.messages(
                        connections=image_connections + label_connections + info_connections):
                    if connection.msgtype == CAMERA_INFO_TYPE:
                        writer.write(info_out[connection.topic], timestamp, rawdata)
                        continue
                    if connection.topic == labels_topic:
                        try:
                            msg = reader.deserialize(rawdata, connection.msgtype)
                            stamp, truth = _stamp_key(msg.header), self._labels_of(msg)
                        except BagError:
                            raise
                        except Exception as exc:  # a corrupt labels message: skipped and counted
                            bad.add("labels", timestamp, exc)
                            continue
                        ground_truth.put(stamp, truth)
                        if stamp in pending:
                            score(stamp, pending.pop(stamp))
                        continue
                    if max_frames and frames + bad.frames >= max_frames:
                        continue
                    t0 = time.perf_counter()
                    if copy_input:
                        writer.write(input_out, timestamp, rawdata)
                    try:
                        msg = reader.deserialize(rawdata, connection.msgtype)
                        rgb = self._decode(msg, msgtype)
                        result = self.segmentor.segment(rgb)
                    except Exception as exc:  # as the node does: skip the frame, count it, go on
                        bad.add("frames", timestamp, exc)
                        continue
                    labels, header = result.labels, msg.header
                    for name, (image, encoding) in render_outputs(rgb, labels, result.mask, self.palette,
                                                                  OVERLAY_ALPHA, out).items():
                        writer.write(out[name], timestamp,
                                     self.typestore.serialize_cdr(self._image(image, header, encoding), IMAGE_TYPE))
                    frame_ms.append((time.perf_counter() - t0) * 1e3)
                    engine_ms.append(result.timings.get("engine_ms", 0.0))
                    bag_times.append(timestamp)
                    class_pixels += np.bincount(labels.ravel(), minlength=contract.num_classes)[:contract.num_classes]
                    frames += 1
                    if confusion is not None:
                        stamp = _stamp_key(header)
                        if stamp in ground_truth:
                            score(stamp, labels)
                        else:
                            pending.put(stamp, labels)
                    if bar:
                        bar.update(frames)
            wall_s = time.perf_counter() - started
            if bar:
                bar.update(frames, final=True)

        if frames == 0:
            raise BagError(f"no frames on {topic} in {input_bag}" if not bad.frames else
                           f"none of the {bad.frames} frames on {topic} could be segmented; first: {bad.first}")
        span_s = (bag_times[-1] - bag_times[0]) / 1e9 if len(bag_times) > 1 else 0.0
        total_pixels = int(class_pixels.sum())
        summary = {
            "input_bag": str(input_bag), "output_bag": str(output_bag), "topic": topic,
            "model": str(self.segmentor.model_path),
            "backend": self.segmentor.semantic.engine.backend, "device": self.segmentor.semantic.engine.device,
            "frames": frames,
            "bad_frames": bad.frames, "bad_label_messages": bad.labels, "bad_frame_errors": bad.errors,
            "input_rate_hz": round((len(bag_times) - 1) / span_s, 3) if span_s > 0 else None,
            "processed_rate_hz": round(frames / wall_s, 3),
            "wall_s": round(wall_s, 3),
            "engine_ms": _percentiles(engine_ms), "frame_ms": _percentiles(frame_ms),
            "class_share": {name: round(int(n) / total_pixels, 6) for name, n in zip(contract.classes, class_pixels)},
        }
        if confusion is not None:
            summary["labels_topic"] = labels_topic
            summary["labelled_frames"] = labelled
            # Frames whose labels never came within the pairing buffer, and labels whose frames never did.
            summary["unpaired_frames"] = pending.evicted + len(pending)
            summary["unpaired_labels"] = ground_truth.evicted + len(ground_truth)
            summary.update(confusion.summary(contract.classes))
        return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="openpixel_bag", description=__doc__.splitlines()[0])
    ap.add_argument("input_bag", type=Path, help="rosbag2 folder (or .mcap/.db3 file)")
    ap.add_argument("output_bag", type=Path, help="new rosbag2 folder to write (must not exist)")
    ap.add_argument("--topic", required=True, help="image topic (sensor_msgs/Image or CompressedImage)")
    ap.add_argument("--model", default=None, help="model path or name; default: the package's default model")
    ap.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "tensorrt"))
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    ap.add_argument("--foreground-classes", nargs="*", default=None, help="classes of the mask output")
    ap.add_argument("--no-adaptation", action="store_true", help="no lighting adaptation (the node's default is on)")
    ap.add_argument("--labels-topic", default=None, help="ground-truth class ids (mono8/mono16) for mIoU")
    ap.add_argument("--ignore-index", type=int, default=None, help="ground-truth id that is not scored")
    ap.add_argument("--prefix", default="/openpixel", help="namespace of the output topics")
    ap.add_argument("--outputs", default=",".join(OUTPUTS), help=f"comma-separated subset of {','.join(OUTPUTS)}")
    ap.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="storage of the output bag")
    ap.add_argument("--no-input-copy", action="store_true", help="do not copy the image topic into the output")
    ap.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    ap.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help="frames declaring more pixels (width x height, read from the header before decoding) "
                         f"are skipped as bad frames (default {DEFAULT_MAX_PIXELS}: 8K)")
    ap.add_argument("--summary", type=Path, default=None, help="summary JSON (default: <output_bag>.summary.json)")
    args = ap.parse_args(argv)

    outputs = [o for o in args.outputs.split(",") if o]
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        ap.error(f"unknown outputs {unknown}; choose from {', '.join(OUTPUTS)}")
    if not args.input_bag.exists():
        ap.error(f"{args.input_bag} does not exist")
    if args.output_bag.exists():
        ap.error(f"{args.output_bag} exists; choose a new folder")

    from .engines import EngineError
    from .model_contract import ContractError
    from .segmentor import Segmentor
    try:
        segmentor = Segmentor(args.model, engine=args.engine, device=args.device,
                              foreground_classes=args.foreground_classes, adaptation=not args.no_adaptation)
    except (EngineError, ContractError, FileNotFoundError, ValueError) as exc:
        print(f"openpixel_bag: cannot load the model: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    try:
        summary = BagSegmenter(segmentor, max_pixels=args.max_image_pixels).run(
            args.input_bag, args.output_bag, args.topic, prefix=args.prefix, storage=args.storage,
            labels_topic=args.labels_topic, ignore_index=args.ignore_index, outputs=outputs,
            copy_input=not args.no_input_copy, max_frames=args.max_frames)
    except BagError as exc:
        print(f"openpixel_bag: {exc}", file=sys.stderr)
        return 1
    finally:
        segmentor.close()
    summary_path = args.summary or args.output_bag.with_name(args.output_bag.name + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    rate = summary["input_rate_hz"]
    print(f"{summary['frames']} frames from {args.topic} ({'?' if rate is None else rate} Hz in the bag) "
          f"processed at {summary['processed_rate_hz']} frames/s; engine p50 {summary['engine_ms']['p50']} ms, "
          f"p95 {summary['engine_ms']['p95']} ms"
          + (f"; mIoU {summary['miou']} over {summary['labelled_frames']} labelled frames"
             if "miou" in summary else "")
          + (f"; {summary['bad_frames']} bad frames skipped (first: {summary['bad_frame_errors'][0]})"
             if summary["bad_frames"] else "")
          + f"\nwrote {args.output_bag} and {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
