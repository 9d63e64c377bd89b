"""Training samples: an RGB image, its class-id label image, and one object for the click head.

Sources: generated shapes (deterministic per index, for tests and smoke
runs), a folder of images with label PNGs of the same stem (the CamVid
layout of ``../shared/datasets/camvid``), and for the click head a mixture of
object-mask folders (DUTS, ECSSD, DAVIS) and class-label folders whose classes'
connected components are the objects (``kind: objects``). Randomness (flips, object choice)
comes from the generator the caller passes, so a training step is
reproducible from its seed alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from openpixel_ros.inference.ground_truth import load_ground_truth

from .config import DataConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class SyntheticShapes:
    """Ellipses and rectangles of class-specific colours on a textured background (class 0)."""

    def __init__(self, num_samples: int, height: int, width: int, num_classes: int, seed: int = 0):
        if num_classes < 2:
            raise ValueError("synthetic shapes need at least 2 classes")
        self.num_samples, self.height, self.width, self.num_classes, self.seed = \
            num_samples, height, width, num_classes, seed
        palette_rng = np.random.default_rng([seed, 7])
        self.palette = palette_rng.integers(0, 256, (num_classes, 3))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        h, w = self.height, self.width
        image = np.clip(self.palette[0] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        labels = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            cls = int(rng.integers(1, self.num_classes))
            shape = np.zeros((h, w), np.uint8)
            cx, cy = int(rng.integers(w // 5, 4 * w // 5)), int(rng.integers(h // 5, 4 * h // 5))
            rx, ry = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3))
            if rng.random() < 0.5:
                cv2.ellipse(shape, (cx, cy), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            else:
                cv2.rectangle(shape, (cx - rx, cy - ry), (cx + rx, cy + ry), 1, -1)
            inside = shape.astype(bool)
            labels[inside] = cls
            colour = self.palette[cls] + rng.normal(0, 12, (int(inside.sum()), 3))
            image[inside] = np.clip(colour, 0, 255).astype(np.uint8)
        return image, labels


class LabelFolder:
    """Images in one folder, uint8 label PNGs with the same stem in another, resized to a fixed size."""

    def __init__(self, images: str, labels: str, height: int, width: int, cache: bool = False):
        image_dir, label_dir = Path(images), Path(labels)
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise FileNotFoundError(f"data folders not found: {image_dir}, {label_dir}")
        label_by_stem = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".png"}
        self.pairs = [(p, label_by_stem[p.stem]) for p in sorted(image_dir.iterdir())
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in label_by_stem]
        if not self.pairs:
            raise FileNotFoundError(f"no image in {image_dir} has a label PNG in {label_dir}")
        self.height, self.width = height, width
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        if self._cache is None:
            return self._load(index)
        if index not in self._cache:
            self._cache[index] = self._load(index)
        return self._cache[index]

    def _load(self, index: int):
        image_path, label_path = self.pairs[index]
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if bgr is None or labels is None or labels.ndim != 2:
            raise ValueError(f"cannot read {image_path} / {label_path} as an image and a 1-channel label map")
        size = (self.width, self.height)
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        return rgb, labels


WHOLE_OBJECT = 1  # label id of a mask source's object (the whole mask is one click object)


class ObjectMaskFolder:
    """Images with one object mask each (salient-object and DAVIS layouts) as label images:
    0 background, :data:`WHOLE_OBJECT` object, ``ignore_index`` unknown/void.

    A mask reads as the click protocol reads ground truth
    (:func:`openpixel_ros.inference.ground_truth.split_ground_truth`): 0/255 masks, GrabCut's 128
    band as unknown, and DAVIS palettes (ids 1..254 merged, 255 void).
    """

    def __init__(self, images: str, masks: str, height: int, width: int, ignore_index: int, cache: bool = False):
        self._folder = LabelFolder(images, masks, height, width, cache=False)
        self.ignore_index = ignore_index
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return len(self._folder)

    def __getitem__(self, index: int):
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_path, mask_path = self._folder.pairs[index]
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read {image_path} as an image")
        obj, ignore = load_ground_truth(mask_path)
        if obj.shape != bgr.shape[:2]:
            raise ValueError(f"{mask_path} is {obj.shape[1]}x{obj.shape[0]}, its image {bgr.shape[1]}x{bgr.shape[0]}")
        labels = np.zeros(obj.shape, np.uint8)
        labels[obj] = WHOLE_OBJECT
        labels[ignore] = self.ignore_index
        size = (self._folder.width, self._folder.height)
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        if self._cache is not None:
            self._cache[index] = (rgb, labels)
        return rgb, labels


class ClassObjects:
    """A class-label folder (CamVid) as click objects: ``object_classes`` become ids 2, 3, ...
    (one connected component is the object), every other class background, ``source_ignore`` void."""

    def __init__(self, folder: LabelFolder, object_classes, source_ignore: int, ignore_index: int):
        self.folder = folder
        lut = np.zeros(256, np.uint8)
        for i, cls in enumerate(object_classes):
            lut[int(cls)] = WHOLE_OBJECT + 1 + i
        lut[int(source_ignore)] = ignore_index
        self._lut = lut

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        rgb, labels = self.folder[index]
        return rgb, self._lut[labels]


class ConcatSources:
    """Several datasets indexed one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        self._ends = np.cumsum([len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int):
        which = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[which - 1]) if which else 0
        return self.datasets[which][index - start]


def make_object_sources(config: DataConfig):
    """``kind: objects``: the click-training mixture of ``config.sources``."""
    datasets = []
    for source in config.sources:
        if source.get("masks"):
            datasets.append(ObjectMaskFolder(source["images"], source["masks"], config.height, config.width,
                                             config.ignore_index, config.cache))
        else:
            folder = LabelFolder(source["images"], source["labels"], config.height, config.width, config.cache)
            datasets.append(ClassObjects(folder, source["object_classes"], source["ignore_index"],
                                         config.ignore_index))
    return ConcatSources(datasets)


def make_dataset(config: DataConfig, num_classes: int, seed: int):
    if config.kind == "synthetic":
        return SyntheticShapes(config.num_samples, config.height, config.width, num_classes, seed)
    if config.kind == "objects":
        return make_object_sources(config)
    folders = [LabelFolder(config.images, config.labels, config.height, config.width, config.cache)]
    folders += [LabelFolder(extra["images"], extra["labels"], config.height, config.width, config.cache)
                for extra in config.extra_folders]
    return folders[0] if len(folders) == 1 else ConcatSources(folders)


def make_validation_set(config: DataConfig, num_classes: int, seed: int):
    """The held-out set (``val_images``/``val_labels``), or None. A synthetic config validates on
    other generated samples (a different seed), so the loop is testable without data."""
    if config.kind == "synthetic":
        return SyntheticShapes(max(2, config.num_samples // 2), config.height, config.width, num_classes, seed + 1)
    if not (config.val_images and config.val_labels):
        return None
    return LabelFolder(config.val_images, config.val_labels, config.height, config.width, config.cache)


def class_pixel_counts(dataset, num_classes: int) -> np.ndarray:
    """Pixels of each class over a whole dataset (ignored ids and ids >= num_classes not counted)."""
    counts = np.zeros(num_classes, np.int64)
    for index in range(len(dataset)):
        _, labels = dataset[index]
        counts += np.bincount(labels.ravel(), minlength=256)[:num_classes]
    return counts


def pick_object(labels: np.ndarray, rng: np.random.Generator, ignore_index: int,
                background_classes=(0,), whole_classes=()) -> Optional[np.ndarray]:
    """A random object: the connected component of a random pixel of a random foreground class,
    or the whole class mask for ``whole_classes`` (a mask dataset's object, parts and all).

    Returns an HxW bool mask, or None when the label image has no foreground class.
    """
    present = [c for c in np.unique(labels) if c != ignore_index and c not in background_classes]
    if not present:
        return None
    cls = present[int(rng.integers(len(present)))]
    if cls in whole_classes:
        return labels == cls
    count, components = cv2.connectedComponents((labels == cls).astype(np.uint8), connectivity=8)
    rows, cols = np.nonzero(components)
    i = int(rng.integers(len(rows)))
    return components == components[rows[i], cols[i]]


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3xHxW in [-1, 1] (the contract's scale 1/255, mean 0.5, std 0.5)."""
    return (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
