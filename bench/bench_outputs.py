"""Per-frame cost of the compressed outputs and of camera_info, against the raw outputs in the same run.

    .venv/bin/python bench/bench_outputs.py [--repeats N]

At 640x480 and 1920x1080, on a real road frame (CamVid when ../shared is there, else the clip
bundled in the package) segmented by the default model, each of ~/label, ~/mask, ~/color and
~/overlay is published the way the node publishes it, to a subscriber in the same process (so
each message is serialised and handed to DDS):
- raw: the sensor_msgs/Image (the baseline: what a subscriber of the raw topic costs);
- compressed: encode (PNG for label/mask, JPEG for color/overlay at the default quality and at
  95) and publish the sensor_msgs/CompressedImage; also the message size.
camera_info: one CameraInfo received into the pairing buffer plus its republication with the
frame's header (what each frame costs when a camera publishes camera_info), and the
missing-camera_info path. One OpenCV thread, as on the node's worker.
Writes ``bench/results/outputs.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED, dds_safe_env, print_table, time_ms, write_results  # noqa: E402

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}


def road_frame() -> tuple:
    camvid = sorted((SHARED / "datasets" / "camvid" / "val").glob("*.jpg"))
    if camvid:
        return camvid[0].name, cv2.cvtColor(cv2.imread(str(camvid[0])), cv2.COLOR_BGR2RGB)
    from openpixel_ros.frame_sources import BUNDLED_CLIP, iter_frames
    return BUNDLED_CLIP.name, next(iter_frames(str(BUNDLED_CLIP), loop=False))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args(argv)
    dds_safe_env()
    cv2.setNumThreads(1)

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header

    from openpixel_ros.node.camera_info import CameraInfoRelay
    from openpixel_ros.node.camera_publisher import nominal_camera_info
    from openpixel_ros.image_codec import encode_output_image
    from openpixel_ros.node.compressed_outputs import CODECS, CompressedOutputs
    from openpixel_ros.node.image_messages import array_to_image_msg
    from openpixel_ros.segmentor import Segmentor
    from openpixel_ros.visualize import colorize, overlay

    source, frame = road_frame()
    segmentor = Segmentor(None, adaptation=False)
    palette = segmentor.contract.color_table()
    rclpy.init()
    node = rclpy.create_node("bench_outputs")
    sink = rclpy.create_node("bench_outputs_sink")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    raw = {name: node.create_publisher(Image, f"~/{name}", qos) for name in ("label", "mask", "color", "overlay")}
    compressed = CompressedOutputs(node, qos, jpeg_quality=80)
    relay = CameraInfoRelay(node, "/bench/image", qos)
    for name in raw:
        sink.create_subscription(Image, f"/bench_outputs/{name}", lambda m: None, qos)
        sink.create_subscription(CompressedImage, f"/bench_outputs/{name}/compressed", lambda m: None, qos)
    sink.create_subscription(CameraInfo, "/bench_outputs/camera_info", lambda m: None, qos)
    for _ in range(50):  # discovery
        rclpy.spin_once(node, timeout_sec=0.05)
        if all(p.get_subscription_count() for p in raw.values()) and relay.publisher.get_subscription_count():
            break

    results, rows = {}, []
    for size_name, (w, h) in SIZES.items():
        rgb = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        result = segmentor.segment(rgb)
        color = colorize(result.labels, palette)
        images = {"label": (result.labels, "mono8"), "mask": (result.mask, "mono8"), "color": (color, "rgb8"),
                  "overlay": (overlay(rgb, color, 0.5, result.labels), "rgb8")}
        header = Header(frame_id="camera")
        header.stamp.sec = 1
        entry = {}
        for name, (image, encoding) in images.items():
            base = time_ms(lambda: raw[name].publish(array_to_image_msg(image, header, encoding)), args.repeats)
            compressed.jpeg_quality = 80
            packed = time_ms(lambda: compressed.publish(name, image, header, encoding), args.repeats)
            size = len(encode_output_image(image, CODECS[name], quality=80))
            entry[name] = {"raw_publish": base, "raw_bytes": int(image.nbytes), "compressed_publish": packed,
                           "compressed_bytes": size}
            rows.append([size_name, name, f"{base['median_ms']:.2f}", f"{image.nbytes / 1e3:.0f}",
                         f"{packed['median_ms']:.2f}", f"{size / 1e3:.1f}",
                         "png" if name in ("label", "mask") else "jpeg q80"])
            if encoding == "rgb8":
                compressed.jpeg_quality = 95
                q95 = time_ms(lambda: compressed.publish(name, image, header, encoding), args.repeats)
                size95 = len(encode_output_image(image, CODECS[name], quality=95))
                entry[name]["compressed_q95_publish"] = q95
                entry[name]["compressed_q95_bytes"] = size95
                rows.append([size_name, name, "", "", f"{q95['median_ms']:.2f}", f"{size95 / 1e3:.1f}", "jpeg q95"])
        info = nominal_camera_info(header, w, h)
        stamp = [0]

        def with_info():
            stamp[0] += 1
            header.stamp.sec = stamp[0]
            info.header.stamp.sec = stamp[0]
            relay._on_camera_info(info)
            assert relay.publish_for(header)

        def without_info():
            header.stamp.sec = 10 ** 9
            assert not relay.publish_for(header)

        entry["camera_info_paired"] = time_ms(with_info, args.repeats * 5)
        entry["camera_info_missing"] = time_ms(without_info, args.repeats * 5)
        rows.append([size_name, "camera_info", "", "", f"{entry['camera_info_paired']['median_ms']:.3f}", "",
                     "receive + pair + republish"])
        rows.append([size_name, "camera_info", "", "", f"{entry['camera_info_missing']['median_ms']:.4f}", "",
                     "none of the frame's stamp (counted)"])
        results[size_name] = entry
    node.destroy_node()
    sink.destroy_node()
    rclpy.try_shutdown()
    segmentor.close()

    print_table(f"Outputs per frame ({source}, one OpenCV thread; median ms)",
                ["size", "output", "raw ms", "raw kB", "compressed ms", "compressed kB", "codec"], rows)
    path = write_results("outputs", {"source": source, "repeats": args.repeats, "jpeg_quality_default": 80,
                                     "png_level": 1, "sizes": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
