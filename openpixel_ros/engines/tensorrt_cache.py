"""TensorRT engine cache: keys, locations and the manifest that guards against stale engines.

A serialized TensorRT engine is only valid for the exact GPU model (compute
capability) and TensorRT version it was built with, and for the ONNX content,
precision and optimization profile it was built from. Every engine file gets a
JSON manifest beside it (``model.engine`` -> ``model.engine.manifest.json``)
recording all of these plus the engine's own SHA-256; it is verified on every
load, so a stale or swapped engine is rebuilt (cache) or refused (explicit file)
instead of being used silently.

Everything here is pure Python: no TensorRT, no CUDA.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..paths import user_cache_dir
from .base import EngineError

MANIFEST_FORMAT = "openpixel-tensorrt-engine/1"
MANIFEST_SUFFIX = ".manifest.json"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# Bump when the meaning of a key changes, so old cache entries are never reused.
KEY_VERSION = 1


def is_engine_file(path) -> bool:
    """Whether ``path`` names a serialized TensorRT engine (by suffix)."""
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def file_sha256(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RuntimeIdentity:
    """What a serialized engine is tied to: the GPU model and the TensorRT version."""

    gpu_name: str
    compute_capability: str  # "8.7" for Jetson Orin
    tensorrt_version: str

    def describe(self) -> str:
        return f"GPU '{self.gpu_name}' (compute {self.compute_capability}), TensorRT {self.tensorrt_version}"

    def to_dict(self) -> dict:
        return {"gpu_name": self.gpu_name, "compute_capability": self.compute_capability,
                "tensorrt_version": self.tensorrt_version}


@dataclass(frozen=True)
class TensorProfile:
    """Optimization-profile shapes of one dynamic input."""

    name: str
    min: tuple
    opt: tuple
    max: tuple

    def to_list(self) -> list:
        return [self.name, list(self.min), list(self.opt), list(self.max)]


@dataclass(frozen=True)
class BuildSettings:
    """Everything, besides the ONNX content and the runtime, that changes what gets built.

    ``calibration`` fingerprints the INT8 calibration data ("" for fp32/fp16).
    The builder workspace is left out on purpose: it bounds tactic memory but does
    not change what the engine computes.
    """

    precision: str
    profiles: tuple = ()  # TensorProfile, in input order
    calibration: str = ""

    def profiles_list(self) -> list:
        return [p.to_list() for p in self.profiles]


def cache_key(onnx_sha256: str, settings: BuildSettings, runtime: RuntimeIdentity) -> str:
    """Hex SHA-256 over every component that makes an engine valid or not."""
    payload = {
        "key_version": KEY_VERSION,
        "onnx_sha256": onnx_sha256,
        "precision": settings.precision,
        "profiles": settings.profiles_list(),
        "calibration": settings.calibration,
        **runtime.to_dict(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def engine_cache_dir() -> Path:
    """Where built engines are cached: ``$OPENPIXEL_ENGINE_CACHE``, else
    ``${XDG_CACHE_HOME:-~/.cache}/openpixel_ros/engines``."""
    return user_cache_dir("engines", "OPENPIXEL_ENGINE_CACHE")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def cached_engine_path(cache_dir, onnx_path, key: str) -> Path:
    """``<cache_dir>/<onnx stem>-<key prefix>.engine``: readable, and unique per key."""
    return Path(cache_dir) / f"{_slug(Path(onnx_path).stem)}-{key[:16]}.engine"


def timing_cache_path(cache_dir, runtime: RuntimeIdentity) -> Path:
    """One timing cache per GPU model and TensorRT version (its entries are valid only there)."""
    return Path(cache_dir) / (f"timing-{_slug(runtime.gpu_name)}-sm{runtime.compute_capability.replace('.', '')}"
                              f"-trt{_slug(runtime.tensorrt_version)}.cache")


def manifest_path(engine_path) -> Path:
    """``model.engine`` -> ``model.engine.manifest.json`` (``model.json`` stays the model contract)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + MANIFEST_SUFFIX)


def make_manifest(*, key: str, engine_sha256: str, onnx_path, onnx_sha256: str, settings: BuildSettings,
                  runtime: RuntimeIdentity, inputs: Sequence[str], outputs: Sequence[str],
                  metadata: Optional[Mapping[str, str]] = None, build_seconds: float = 0.0,
                  workspace_mb: int = 0, built_at: str = "") -> dict:
    """The manifest dict written beside an engine."""
    return {
        "format": MANIFEST_FORMAT,
        "key": key,
        "engine_sha256": engine_sha256,
        "onnx_path": str(onnx_path),
        "onnx_sha256": onnx_sha256,
        "precision": settings.precision,
        "profiles": settings.profiles_list(),
        "calibration": settings.calibration,
        **runtime.to_dict(),
        "inputs": list(inputs),
        "outputs": list(outputs),
        "metadata": dict(metadata or {}),
        "build_seconds": round(float(build_seconds), 3),
        "workspace_mb": int(workspace_mb),
        "built_at": built_at,
    }


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never
    see a half-written engine or manifest (two nodes may build the same engine at once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(engine_path, manifest: Mapping) -> Path:
    path = manifest_path(engine_path)
    write_atomic(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return path


def read_manifest(engine_path) -> Optional[dict]:
    """The manifest beside ``engine_path``, None if there is none; EngineError if it is unreadable."""
    path = manifest_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"engine manifest {path} is unreadable ({exc}); delete it and rebuild the engine") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise EngineError(f"engine manifest {path} has format {fmt!r}, expected {MANIFEST_FORMAT!r}")
    return data


def runtime_mismatches(manifest: Mapping, runtime: RuntimeIdentity) -> list:
    """Why an engine built under ``manifest`` cannot run on ``runtime`` (empty: it can)."""
    reasons = []
    if manifest.get("tensorrt_version") != runtime.tensorrt_version:
        reasons.append(f"built with TensorRT {manifest.get('tensorrt_version')}, "
                       f"this machine has {runtime.tensorrt_version}")
    if (manifest.get("gpu_name") != runtime.gpu_name
            or manifest.get("compute_capability") != runtime.compute_capability):
        reasons.append(f"built for GPU '{manifest.get('gpu_name')}' (compute {manifest.get('compute_capability')}), "
                       f"this machine has '{runtime.gpu_name}' (compute {runtime.compute_capability})")
    return reasons


def stale_reasons(manifest: Mapping, *, key: str, onnx_sha256: str, settings: BuildSettings,
                  runtime: RuntimeIdentity, engine_sha256: Optional[str]) -> list:
    """Why a cached engine must not be reused (empty: it is fresh).

    ``engine_sha256`` is the hash of the engine file on disk (None: the file is missing).
    """
    reasons = runtime_mismatches(manifest, runtime)
    if manifest.get("onnx_sha256") != onnx_sha256:
        reasons.append("the ONNX file changed")
    if manifest.get("precision") != settings.precision:
        reasons.append(f"precision {manifest.get('precision')} != {settings.precision}")
    if manifest.get("profiles") != settings.profiles_list():
        reasons.append("optimization profile shapes changed")
    if manifest.get("calibration", "") != settings.calibration:
        reasons.append("INT8 calibration data changed")
    if engine_sha256 is None:
        reasons.append("the engine file is missing")
    elif manifest.get("engine_sha256") != engine_sha256:
        reasons.append("the engine file does not match its manifest (replaced or corrupted)")
    if not reasons and manifest.get("key") != key:
        reasons.append("cache key differs (older cache format)")
    return reasons


__all__ = [
    "MANIFEST_FORMAT", "ENGINE_SUFFIXES", "KEY_VERSION", "is_engine_file", "file_sha256", "RuntimeIdentity",
    "TensorProfile", "BuildSettings", "cache_key", "engine_cache_dir", "cached_engine_path", "timing_cache_path",
    "manifest_path", "make_manifest", "write_atomic", "write_manifest", "read_manifest", "runtime_mismatches",
    "stale_reasons",
]
