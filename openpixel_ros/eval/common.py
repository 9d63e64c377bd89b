"""Shared plumbing of the evaluation tools: data pairing, image loading, class maps, scoring.

* :func:`pair_by_stem` pairs images with label images by file stem.
* :class:`ClassMap` maps a model's classes onto an evaluation set's class ids
  (``config/class_maps/*.yaml``).
* scoring is :class:`openpixel_ros.inference.confusion_matrix.ConfusionMatrix`'s (shared with
  training's held-out scoring and the bag tool).
* :func:`add_model_arguments` / :func:`load_segmenter` give every tool the same
  ``--model/--engine/--contract/--threads`` options.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..engines import engine_names
from ..image_header import DEFAULT_MAX_PIXELS, check_image_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# -- data --------------------------------------------------------------------------------
def _files_by_stem(folder: Path) -> dict:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            files.setdefault(path.stem, path)
    return files


def pair_by_stem(images_dir, labels_dir, limit: Optional[int] = None) -> list:
    """``[(stem, image_path, label_path)]`` for every image whose stem has a label, sorted by stem.

    ``limit`` keeps the first N pairs. Raises FileNotFoundError for a missing folder and
    ValueError when no stem matches.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"not a directory: {folder}")
    images, labels = _files_by_stem(images_dir), _files_by_stem(labels_dir)
    pairs = [(stem, images[stem], labels[stem]) for stem in sorted(images) if stem in labels]
    if not pairs:
        raise ValueError(f"no image in {images_dir} has a label with the same stem in {labels_dir}")
    return pairs[:limit] if limit else pairs


def load_rgb(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; one over ``max_pixels`` is refused before decoding."""
    check_image_file(path, max_pixels)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_labels(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A class-id label image (grey or palette PNG) as HxW uint8 ids; palette PNGs give their indices.
    One over ``max_pixels`` is refused before decoding."""
    from PIL import Image

    check_image_file(path, max_pixels)

    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I;16", "I"):
            raise ValueError(f"label image {path} has mode {image.mode}; expected single-channel class ids")
        labels = np.asarray(image)
    if labels.max(initial=0) > 255:
        raise ValueError(f"label image {path} has ids above 255")
    return labels.astype(np.uint8)


# -- class maps --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMap:
    """Model class index -> evaluation class id (``-1``: the model class has no evaluation
    counterpart, so its pixels count as misses wherever the ground truth has a class)."""

    table: np.ndarray            # int64 [num_model_classes]
    target_classes: tuple        # evaluation class names, index = id
    ignore_index: Optional[int]  # ground-truth id that is not scored
    name: str = "identity"

    @property
    def num_classes(self) -> int:
        return len(self.target_classes)

    @classmethod
    def identity(cls, model_classes: Sequence[str], ignore_index: Optional[int] = None) -> "ClassMap":
        return cls(np.arange(len(model_classes), dtype=np.int64), tuple(model_classes), ignore_index)

    @classmethod
    def from_file(cls, path, model_classes: Sequence[str]) -> "ClassMap":
        """Read a YAML/JSON class map for a model's classes.

        Format: ``target_classes`` (evaluation class names, index = id), optional
        ``ignore_index`` (the label id not scored) and ``map`` from model class names (or
        indices) to evaluation ids, or null for "no evaluation class". Every model class
        must appear, so a typo cannot silently drop one.
        """
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
        try:
            targets = tuple(str(c) for c in data["target_classes"])
            mapping = dict(data["map"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"class map {path} lacks {exc}") from None
        model_classes = list(model_classes)
        table = np.full(len(model_classes), -2, np.int64)
        for key, value in mapping.items():
            if isinstance(key, int) or str(key).isdigit():
                index = int(key)
            elif str(key) in model_classes:
                index = model_classes.index(str(key))
            else:
                raise ValueError(f"class map {path.name}: model has no class {key!r} "
                                 f"(model classes: {', '.join(model_classes)})")
            if not 0 <= index < len(model_classes):
                raise ValueError(f"class map {path.name}: class index {index} out of range")
            target = -1 if value is None else int(value)
            if not -1 <= target < len(targets):
                raise ValueError(f"class map {path.name}: {key!r} -> {value} is not an id of {len(targets)} "
                                 "evaluation classes (or null)")
            table[index] = target
        missing = [model_classes[i] for i in np.flatnonzero(table == -2)]
        if missing:
            raise ValueError(f"class map {path.name} does not map model classes: {', '.join(missing)}")
        ignore = data.get("ignore_index")
        return cls(table, targets, None if ignore is None else int(ignore), name=path.stem)

    def apply(self, model_labels: np.ndarray) -> np.ndarray:
        """Model class ids -> evaluation ids (``num_classes`` for unmapped classes)."""
        lut = np.where(self.table < 0, self.num_classes, self.table)
        return lut[model_labels].astype(np.int64)


# -- models ------------------------------------------------------------------------------
def add_data_arguments(parser) -> None:
    """The data and model options shared by the ``semantic`` and ``lighting`` tools."""
    parser.add_argument("--images", required=True, help="folder of input images")
    parser.add_argument("--labels", required=True,
                        help="folder of uint8 class-id PNGs, paired with the images by file stem")
    parser.add_argument("--model", help="model file (default: the node's default model)")
    parser.add_argument("--engine", default="onnxruntime", choices=engine_names(),
                        help="inference engine; opencv-dnn is evaluation-only, for reference models "
                             "such as the Torch7 ENet (default: %(default)s)")
    parser.add_argument("--contract", help="metadata JSON for a model that has none (opencv-dnn)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="engine threads; 0 = one per core")
    parser.add_argument("--class-map", help="YAML/JSON mapping the model's classes onto the label ids "
                                            "(config/class_maps/); default: identity")
    parser.add_argument("--ignore-index", type=int,
                        help="label id that is not scored (default: the class map's, else 255)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N pairs (sorted by stem)")
    parser.add_argument("--json", help="write the results to this JSON file")


def resolve_model_path(model) -> Path:
    """``model`` (a path or a model name), or the node's default model; SystemExit with a clear
    message when it is unavailable."""
    try:
        from ..default_model import resolve_model
        return resolve_model(model)
    except (ImportError, FileNotFoundError) as exc:
        raise SystemExit(f"error: model {model or 'default'} is unavailable ({exc})") from None


def load_segmenter(args):
    """The :class:`~openpixel_ros.semantic.SemanticSegmenter` the options describe."""
    from ..model_contract import parse_contract
    from ..semantic import SemanticSegmenter

    path = resolve_model_path(args.model)
    contract = parse_contract(json.loads(Path(args.contract).read_text())) if args.contract else None
    return SemanticSegmenter.from_file(path, engine=args.engine, device=args.device, threads=args.threads,
                                       contract=contract)


def class_map_for(args, model_classes: Sequence[str]) -> ClassMap:
    """The class map the options ask for, with ``--ignore-index`` applied."""
    if args.class_map:
        class_map = ClassMap.from_file(args.class_map, model_classes)
    else:
        class_map = ClassMap.identity(model_classes)
    ignore = args.ignore_index if args.ignore_index is not None else class_map.ignore_index
    ignore = 255 if ignore is None else ignore
    return ClassMap(class_map.table, class_map.target_classes, ignore, class_map.name)


def write_json(path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def progress(message: str) -> None:
    """One status line on stderr (stdout is kept for results)."""
    print(message, file=sys.stderr, flush=True)
