"""Training configuration: a YAML file mapped onto dataclasses, with unknown keys rejected.

See ``config/train/example.yaml`` for every option with its default. Relative
paths in the file (data folders, the pretrained TFLite file, the output
folder) are relative to the working directory, the repository root when run
as documented.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import yaml

from openpixel_ros.model.openpixel import ModelInfo, OpenPixelConfig

from .losses import LossWeights


class ConfigError(ValueError):
    """The training configuration is malformed."""


def _build(cls, data, section: str):
    data = dict(data or {})
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown option(s) in '{section}': {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad '{section}' section: {exc}") from None


@dataclass
class DataConfig:
    """``kind: synthetic`` (generated shapes, for tests) or ``kind: folder`` (images + label PNGs by stem)."""

    kind: str = "synthetic"
    images: Optional[str] = None  # folder kind: image folder
    labels: Optional[str] = None  # folder kind: label folder (uint8 class ids, same stems)
    num_samples: int = 16  # synthetic kind
    height: int = 64  # training crop size (images are resized to it)
    width: int = 64
    ignore_index: int = 255
    background_classes: tuple = (0,)  # classes never chosen as a click object
    hflip: bool = True


@dataclass
class OptimConfig:
    name: str = "adamw"  # or "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    backbone_lr_scale: float = 0.1  # the pretrained backbone learns slower


@dataclass
class ScheduleConfig:
    name: str = "poly"  # "poly", "cosine" or "constant"
    warmup_steps: int = 0
    power: float = 0.9  # poly only


@dataclass
class ClickConfig:
    """Iterative click simulation (RITM): random starting clicks, then up to ``max_iterations``
    no-grad rounds that each add a click in the current prediction's largest error."""

    max_initial_positive: int = 3
    max_initial_negative: int = 3
    max_iterations: int = 3
    sigma: float = 8.0
    previous_mask: bool = True


@dataclass
class LoopConfig:
    epochs: int = 1
    max_steps: Optional[int] = None  # stop early after this many steps in total
    batch_size: int = 2
    checkpoint_every: int = 100  # steps; a checkpoint is also written at the end
    log_every: int = 10
    freeze_backbone_bn: bool = True  # keep the pretrained (folded) normalisation statistics
    threads: int = 2


@dataclass
class TrainConfig:
    seed: int = 0
    output_dir: str = "out/train"
    pretrained_tflite: Optional[str] = None
    model: OpenPixelConfig = field(default_factory=OpenPixelConfig)
    model_info: ModelInfo = field(default_factory=ModelInfo)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    clicks: ClickConfig = field(default_factory=ClickConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict:
        return asdict(self)


_SECTIONS = {"model": OpenPixelConfig, "model_info": ModelInfo, "data": DataConfig, "optimizer": OptimConfig,
             "schedule": ScheduleConfig, "loss": LossWeights, "clicks": ClickConfig, "train": LoopConfig}


def config_from_dict(data: dict) -> TrainConfig:
    """Build a :class:`TrainConfig` from plain data (as read from YAML). Raises ConfigError."""
    data = dict(data or {})
    top = {f.name for f in fields(TrainConfig)}
    unknown = set(data) - top
    if unknown:
        raise ConfigError(f"unknown top-level option(s): {', '.join(sorted(unknown))}")
    sections = {name: _build(cls, data.pop(name, None), name) for name, cls in _SECTIONS.items()}
    sections["data"].background_classes = tuple(sections["data"].background_classes)
    sections["model"].decoder_dilations = tuple(sections["model"].decoder_dilations)
    config = TrainConfig(**data, **sections)
    if config.data.kind not in ("synthetic", "folder"):
        raise ConfigError(f"data.kind must be synthetic or folder, not {config.data.kind!r}")
    if config.data.kind == "folder" and not (config.data.images and config.data.labels):
        raise ConfigError("data.kind folder needs data.images and data.labels")
    if config.optimizer.name not in ("adamw", "sgd"):
        raise ConfigError(f"optimizer.name must be adamw or sgd, not {config.optimizer.name!r}")
    if config.schedule.name not in ("poly", "cosine", "constant"):
        raise ConfigError(f"schedule.name must be poly, cosine or constant, not {config.schedule.name!r}")
    if config.model_info.classes and len(config.model_info.classes) != config.model.num_classes:
        raise ConfigError(f"model_info lists {len(config.model_info.classes)} classes, "
                          f"model.num_classes is {config.model.num_classes}")
    return config


def load_config(path) -> TrainConfig:
    """Read a YAML training configuration. Raises ConfigError (or OSError for a missing file)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of options")
    return config_from_dict(data)
