"""An optional person model: MediaPipe selfie segmentation, converted to ONNX.

The package's default model is OpenPixel road (:mod:`openpixel_ros.default_model`,
shipped in the package). The selfie model was the first default and stays an
option: ``openpixel_fetch_model`` (or ``python -m openpixel_ros.selfie_model``)
downloads the PyPI wheel
``mediapipe==0.10.21`` with pip, without installing it (it pins numpy<2 and
protobuf<5), takes the two selfie segmentation TFLite files out of it,
converts them with :mod:`openpixel_ros.tflite` and writes, in
:func:`model_dir`::

    selfie_segmentation_landscape.onnx + .json   144x256 (model_path:=selfie)
    selfie_segmentation.onnx + .json             256x256
    downloads/mediapipe-0.10.21-...whl           kept, so a re-fetch needs no network

Each ``.json`` is the model's openpixel metadata sidecar; the same JSON is
embedded in the ONNX file as the metadata property ``openpixel``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import onnx

from openpixel_ros.paths import model_dir
from openpixel_ros.tflite.to_onnx import convert

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.21"
# One fixed wheel, whatever the host: the TFLite files are platform-independent data,
# and 0.10.21 has no wheel for some hosts (aarch64 with Python 3.12, for one).
WHEEL_PLATFORM = ("manylinux_2_28_x86_64", "3.11", "cp", "cp311")
WHEEL_FILENAME = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_MODEL_DIR = "mediapipe/modules/selfie_segmentation/"
FETCH_COMMAND = "openpixel_fetch_model (or: python -m openpixel_ros.selfie_model)"
SELFIE_MODEL = "selfie_segmentation_landscape"

# name -> input size, source line and SHA-256 of the TFLite file inside the wheel.
SELFIE_MODELS = {
    "selfie_segmentation_landscape": {
        "height": 144, "width": 256, "variant": "landscape",
        "sha256": "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
    },
    "selfie_segmentation": {
        "height": 256, "width": 256, "variant": "square",
        "sha256": "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    },
}


def selfie_model_path() -> Path:
    """The landscape selfie ONNX model; FileNotFoundError if it has not been fetched."""
    path = model_dir() / f"{SELFIE_MODEL}.onnx"
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"selfie model {path} is missing; fetch it with {FETCH_COMMAND}")
    return path


def model_metadata(name: str, input_name: str, output_name: str) -> dict:
    """The openpixel metadata (sidecar JSON) of selfie model ``name``."""
    spec = SELFIE_MODELS[name]
    return {
        "format": "openpixel-model/1",
        "task": "semantic",
        "input": {"name": input_name, "layout": "NCHW", "height": spec["height"],
                  "width": spec["width"], "color_order": "rgb", "scale": 1.0 / 255.0,
                  "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "resize": "stretch"},
        "output": {"name": output_name, "kind": "probability"},
        "classes": ["background", "person"],
        "colors": [[0, 0, 0], [255, 64, 64]],
        "conditioning": None,
        "source": f"MediaPipe selfie segmentation ({spec['variant']}), Apache-2.0, "
                  f"from PyPI {MEDIAPIPE_REQUIREMENT}",
        "license": "Apache-2.0",
    }


def download_wheel(downloads: Path) -> Path:
    """The mediapipe wheel in ``downloads``, fetched from PyPI with pip unless already there."""
    wheel = downloads / WHEEL_FILENAME
    if wheel.is_file():
        return wheel
    downloads.mkdir(parents=True, exist_ok=True)
    platform, python_version, implementation, abi = WHEEL_PLATFORM
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", platform, "--python-version", python_version,
               "--implementation", implementation, "--abi", abi,
               "--disable-pip-version-check", "--progress-bar", "off",
               MEDIAPIPE_REQUIREMENT, "-d", str(downloads)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"pip download {MEDIAPIPE_REQUIREMENT} failed "
                           f"(exit {result.returncode}): {lines[-1]}")
    return wheel


def extract_selfie_tflite(wheel: Path, dest: Path) -> dict:
    """Write the selfie TFLite files from the mediapipe ``wheel`` into ``dest``, checking
    their SHA-256. Returns {model name: path}."""
    paths = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name, spec in SELFIE_MODELS.items():
                data = archive.read(f"{WHEEL_MODEL_DIR}{name}.tflite")
                digest = hashlib.sha256(data).hexdigest()
                if digest != spec["sha256"]:
                    raise RuntimeError(f"{name}.tflite in {wheel.name} has SHA-256 {digest}, "
                                       f"expected {spec['sha256']}")
                paths[name] = dest / f"{name}.tflite"
                paths[name].write_bytes(data)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise RuntimeError(f"{wheel} is not a usable mediapipe wheel ({exc}); delete it and "
                           "fetch again") from None
    return paths


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a model."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(tmp.name, path)


def install_from_wheel(wheel: Path, dest: Path) -> dict:
    """Convert the wheel's selfie models to ONNX in ``dest``, each with its metadata sidecar
    and embedded ``openpixel`` metadata. Returns {model name: ONNX path}."""
    dest.mkdir(parents=True, exist_ok=True)
    installed = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, tflite in extract_selfie_tflite(wheel, Path(scratch)).items():
            model = convert(tflite)
            metadata = model_metadata(name, model.graph.input[0].name, model.graph.output[0].name)
            text = json.dumps(metadata, indent=2) + "\n"
            onnx.helper.set_model_props(model, {"openpixel": json.dumps(metadata)})
            onnx_path = dest / f"{name}.onnx"
            _write_atomically(onnx_path, model.SerializeToString())
            _write_atomically(onnx_path.with_suffix(".json"), text.encode())
            installed[name] = onnx_path
    return installed


def fetch_selfie_model(force: bool = False) -> Path:
    """Make sure both selfie models are in :func:`model_dir`; return the landscape one's path.

    Idempotent: returns at once when the models exist, unless ``force``, which
    converts them again (still reusing a downloaded wheel). Raises RuntimeError
    with a one-line message when the download or conversion fails.
    """
    dest = model_dir()
    targets = [dest / f"{name}{suffix}" for name in SELFIE_MODELS for suffix in (".onnx", ".json")]
    if not force and all(path.is_file() for path in targets):
        return dest / f"{SELFIE_MODEL}.onnx"
    wheel = download_wheel(dest / "downloads")
    return install_from_wheel(wheel, dest)[SELFIE_MODEL]


def main(argv=None) -> int:
    """Console entry ``openpixel_fetch_model``."""
    parser = argparse.ArgumentParser(
        prog="openpixel_fetch_model",
        description=f"Fetch the optional person model (MediaPipe selfie segmentation from "
                    f"PyPI {MEDIAPIPE_REQUIREMENT}) and convert it to ONNX in {model_dir()}. "
                    "The default model (OpenPixel road) ships with the package and needs no fetch.")
    parser.add_argument("--force", action="store_true",
                        help="convert again even if the models are already there")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        path = fetch_selfie_model(force=args.force)
    except (RuntimeError, ValueError, NotImplementedError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"selfie model: {path} (metadata {path.with_suffix('.json').name}); "
          f"{time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
