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

from openpixel_ros.model.click_network import ClickNetworkConfig
from openpixel_ros.model.openpixel import ModelInfo, OpenPixelConfig
from openpixel_ros.model_contract import CONDITIONING_SIZE

from .losses import CLASS_WEIGHTINGS, LossWeights


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
    """``kind: synthetic`` (generated shapes, for tests) or ``kind: folder`` (images + label PNGs by stem).

    Images are first resized to ``height`` x ``width``. Augmentation then draws, per
    sample: a scale in ``[scale_min, scale_max]`` and a ``crop_height`` x ``crop_width``
    window (padded with ``ignore_index`` where the scaled image is smaller), a
    horizontal flip, and with probability ``lighting_prob`` a random lighting shift of
    ``eval lighting``'s family. The conditioning vector is computed from the augmented
    image by the package's lighting adaptation, which also corrects it (as the node
    does) with probability ``correction_prob``; with probability
    ``conditioning_dropout`` the vector is zeroed (the "no conditioning" input).
    """

    kind: str = "synthetic"
    images: Optional[str] = None  # folder kind: image folder
    labels: Optional[str] = None  # folder kind: label folder (uint8 class ids, same stems)
    val_images: Optional[str] = None  # held-out folder scored every train.validate_every steps
    # (the synthetic kind validates on other generated samples)
    val_labels: Optional[str] = None
    # folder kind: more {images, labels} folders trained on beside images/labels (e.g. CamVid val for the
    # final train+val run, which then validates on nothing: it picks no checkpoint on data it saw)
    extra_folders: list = field(default_factory=list)
    num_samples: int = 16  # synthetic kind
    height: int = 64  # images are resized to this size first (validation runs at it)
    width: int = 64
    crop_height: Optional[int] = None  # training crop; None: the whole (scaled) image
    crop_width: Optional[int] = None
    scale_min: float = 1.0
    scale_max: float = 1.0
    hflip: bool = True
    lighting_prob: float = 0.0
    correction_prob: float = 0.5
    conditioning_dropout: float = 0.0
    cache: bool = True  # keep decoded images in memory (CamVid train: about 190 MB)
    ignore_index: int = 255
    background_classes: tuple = (0,)  # classes never chosen as a click object
    # kind objects: the click-training mixture. Each source is {images, masks} (one object mask per
    # image: 0/255, GrabCut 128 band or DAVIS palette) or {images, labels, object_classes, ignore_index}
    # (a class-label folder whose listed classes' connected components are objects).
    sources: list = field(default_factory=list)


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
    enabled: bool = True  # false: semantic training only (no decoder passes)
    max_iterations: int = 3
    sigma: float = 8.0
    previous_mask: bool = True
    # Probability that a sample is prompted with scribbles instead of clicks: one positive stroke,
    # then one corrective stroke per simulation round (click_simulation.scribble_in).
    scribble_prob: float = 0.0
    # Probability that a sample's previous mask is withheld in the training pass (its clicks stay).
    previous_mask_dropout: float = 0.0


@dataclass
class LoopConfig:
    epochs: int = 1
    max_steps: Optional[int] = None  # stop early after this many steps in total
    batch_size: int = 2
    checkpoint_every: int = 100  # steps; a checkpoint is also written at the end
    validate_every: int = 0  # steps; 0: no validation (needs data.val_images/val_labels)
    validation_batch: int = 4
    log_every: int = 10
    # true: keep the backbone's BatchNorms at the identity that loading pretrained (folded) weights
    # sets; only meaningful with pretrained weights. false: train them, after calibrating their
    # statistics on training batches so that the pretrained function is kept at step 0.
    freeze_backbone_bn: bool = False
    # true: train the click decoder only; the encoder (backbone, pyramid, FiLM, semantic head) keeps
    # init_checkpoint's weights bit for bit, so the semantic model is unchanged.
    freeze_encoder: bool = False
    keep_every: int = 0  # steps; also keep step_<N>.pt copies (learning curves); 0: only last.pt
    threads: int = 2  # CPU threads
    device: str = "auto"  # auto (cuda when present), cuda (falls back to cpu when absent) or cpu


NETWORKS = ("openpixel", "click")  # the road/semantic network (with its click decoder), the click network


@dataclass
class TrainConfig:
    seed: int = 0
    network: str = "openpixel"  # "click": the early-fusion click network (model: ClickNetworkConfig)
    output_dir: str = "out/train"
    pretrained_tflite: Optional[str] = None
    init_checkpoint: Optional[str] = None  # start from this OpenPixel checkpoint's weights (not its optimiser)
    model: OpenPixelConfig | ClickNetworkConfig = field(default_factory=OpenPixelConfig)
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
    network = data.get("network", "openpixel")
    if network not in NETWORKS:
        raise ConfigError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")
    classes = dict(_SECTIONS, model=ClickNetworkConfig if network == "click" else OpenPixelConfig)
    sections = {name: _build(cls, data.pop(name, None), name) for name, cls in classes.items()}
    sections["data"].background_classes = tuple(sections["data"].background_classes)
    if network == "openpixel":
        sections["model"].decoder_dilations = tuple(sections["model"].decoder_dilations)
    config = TrainConfig(**data, **sections)
    return _check_click_network(config) if network == "click" else _check_openpixel(config)


def _check_shared(config: TrainConfig) -> None:
    """The checks both networks' configurations need (data sources, clicks, optimiser, schedule, device,
    augmentation)."""
    d = config.data
    if d.kind == "objects":
        if not d.sources:
            raise ConfigError("data.kind objects needs data.sources")
        for i, source in enumerate(d.sources):
            if not isinstance(source, dict) or "images" not in source:
                raise ConfigError(f"data.sources[{i}] needs images and masks (or labels)")
            if "masks" not in source and not {"labels", "object_classes", "ignore_index"} <= set(source):
                raise ConfigError(f"data.sources[{i}] needs masks, or labels with object_classes and ignore_index")
    for name in ("scribble_prob", "previous_mask_dropout"):
        if not 0.0 <= getattr(config.clicks, name) <= 1.0:
            raise ConfigError(f"clicks.{name} must be in [0, 1]")
    if config.optimizer.name not in ("adamw", "sgd"):
        raise ConfigError(f"optimizer.name must be adamw or sgd, not {config.optimizer.name!r}")
    if config.schedule.name not in ("poly", "cosine", "constant"):
        raise ConfigError(f"schedule.name must be poly, cosine or constant, not {config.schedule.name!r}")
    if config.train.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, not {config.train.device!r}")
    if (d.crop_height is None) != (d.crop_width is None):
        raise ConfigError("data.crop_height and data.crop_width go together")
    if not 0 < d.scale_min <= d.scale_max:
        raise ConfigError("data.scale_min and scale_max must satisfy 0 < scale_min <= scale_max")
    for name in ("lighting_prob", "correction_prob", "conditioning_dropout"):
        if not 0.0 <= getattr(d, name) <= 1.0:
            raise ConfigError(f"data.{name} must be in [0, 1]")


def _check_openpixel(config: TrainConfig) -> TrainConfig:
    """``network: openpixel``: the road network's semantic head and/or its late-fusion click decoder."""
    d = config.data
    if d.kind not in ("synthetic", "folder", "objects"):
        raise ConfigError(f"data.kind must be synthetic, folder or objects, not {d.kind!r}")
    if d.kind == "folder" and not (d.images and d.labels):
        raise ConfigError("data.kind folder needs data.images and data.labels")
    if d.extra_folders and d.kind != "folder":
        raise ConfigError("data.extra_folders adds label folders to data.kind folder only")
    for i, extra in enumerate(d.extra_folders):
        if not isinstance(extra, dict) or not (extra.get("images") and extra.get("labels")):
            raise ConfigError(f"data.extra_folders[{i}] needs images and labels")
        if config.train.validate_every and extra["images"] == d.val_images:
            raise ConfigError(f"data.extra_folders[{i}] trains on the validation folder: set train.validate_every "
                              "to 0 (a run cannot be scored on what it trains on)")
    _check_shared(config)
    if d.kind == "objects" and (not config.clicks.enabled or not config.train.freeze_encoder):
        raise ConfigError("data.kind objects trains the click decoder only: it needs clicks.enabled "
                          "and train.freeze_encoder (object masks carry no semantic classes)")
    if config.train.freeze_encoder and not config.init_checkpoint:
        raise ConfigError("train.freeze_encoder needs init_checkpoint: a frozen random encoder learns nothing")
    if config.model.conditioning_size not in (0, CONDITIONING_SIZE):
        raise ConfigError(f"model.conditioning_size must be 0 or {CONDITIONING_SIZE} (the lighting adaptation's "
                          "conditioning vector, which the trainer computes for every sample)")
    if config.train.freeze_backbone_bn and not config.pretrained_tflite:
        raise ConfigError("train.freeze_backbone_bn needs pretrained_tflite: a random backbone "
                          "would train with identity BatchNorm")
    if config.train.validate_every and d.kind == "objects":
        raise ConfigError("train.validate_every scores semantic classes; kind objects has none "
                          "(score click checkpoints with eval clicks)")
    if config.train.validate_every and d.kind == "folder" and not (d.val_images and d.val_labels):
        raise ConfigError("train.validate_every needs data.val_images and data.val_labels")
    if config.loss.class_weighting not in CLASS_WEIGHTINGS:
        raise ConfigError(f"loss.class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}")
    if config.model_info.classes and len(config.model_info.classes) != config.model.num_classes:
        raise ConfigError(f"model_info lists {len(config.model_info.classes)} classes, "
                          f"model.num_classes is {config.model.num_classes}")
    return config


def _check_click_network(config: TrainConfig) -> TrainConfig:
    """``network: click`` trains the whole early-fusion click network on object masks."""
    if config.data.kind not in ("objects", "synthetic"):
        raise ConfigError("network click trains on object masks: data.kind objects (or synthetic)")
    _check_shared(config)
    if not config.clicks.enabled:
        raise ConfigError("network click needs clicks.enabled")
    if config.train.freeze_encoder or config.train.validate_every:
        raise ConfigError("network click takes neither train.freeze_encoder nor train.validate_every "
                          "(it trains whole; score it with eval clicks)")
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
