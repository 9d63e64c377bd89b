"""Train OpenPixel from a YAML configuration, with checkpoints and exact resume.

    python -m openpixel_ros.training.train --config config/train/example.yaml [--resume PATH|auto] [--max-steps N]

Each step trains both heads on one batch: the semantic head on the label
images, and (``clicks.enabled``) the click head with RITM-style iterative click
simulation (random starting clicks, then 0..N no-grad rounds that each add a
click in the largest error of the current prediction, feeding the prediction
back as the previous mask), all on one encoder pass. Samples are augmented by
:mod:`.augment` (scale, crop, flip, lighting; conditioning from the node's own
adaptation).

Every ``validate_every`` steps the model is scored on the held-out folder
(mIoU, per-class IoU); the best checkpoint is kept as ``best.pt``. Progress
goes to the console (step, images/s, ETA), ``log.jsonl`` (every step) and
``log.csv`` (every ``log_every`` steps and every validation).

Runs on CUDA when ``train.device`` asks for it (``auto``: when present) and on
the CPU otherwise; the data, augmentation and click simulation are the same.

Reproducibility: step ``k`` draws its data order, flips, object choice and
clicks from generators seeded by ``(seed, k)``, and checkpoints hold the
model, optimizer, scheduler, step and the global RNG states, so a run resumed
from a checkpoint continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from openpixel_ros.inference.click_simulation import (Click, Scribble, next_click, next_scribble,
                                                     random_initial_clicks, scribble_in)
from openpixel_ros.inference.prompt_maps import GRID_STRIDE, render_prompt_maps
from openpixel_ros.model.click_network import CLICK_NETWORK_CHECKPOINT, PROMPT_STRIDE, ClickNetwork
from openpixel_ros.model.openpixel import CHECKPOINT_FORMAT, OpenPixel

from .augment import SampleAugmenter
from .config import ConfigError, TrainConfig, load_config
from .data import WHOLE_OBJECT, class_pixel_counts, make_dataset, make_validation_set, pick_object, to_model_input
from .losses import class_weights, click_mask_loss, semantic_loss
from .validation import evaluate


def select_device(requested: str, log=print) -> torch.device:
    """``auto``: CUDA when present; ``cuda``: CUDA, or the CPU with a warning when absent."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda" and log:
        log("warning: train.device is cuda but no CUDA device is present; training on the CPU")
    return torch.device("cpu")


@torch.no_grad()
def calibrate_batchnorm(module: torch.nn.Module, batches) -> int:
    """Give identity BatchNorms (as pretrained folded weights leave them) the statistics of their
    inputs over ``batches``, with scale and shift that keep each layer's output unchanged.

    A BatchNorm computing ``x * w / sqrt(1 + eps) + b`` with ``w = sqrt(1 + eps)`` becomes
    ``(x - m) / sqrt(v + eps) * sqrt(v + eps) + (b + m)``: the same function, but now trainable
    with batch statistics that match the data. Returns the number of layers calibrated.
    """
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sums = {id(m): [0.0, 0.0, 0] for m in norms}

    def hook(layer, inputs, _output):
        x = inputs[0].double()
        acc = sums[id(layer)]
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
        acc[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_hook(hook) for m in norms]
    was_training = module.training
    module.eval()
    try:
        for batch in batches:
            module(batch)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    for m in norms:
        total, squares, count = sums[id(m)]
        if not count:
            continue
        mean = total / count
        var = (squares / count - mean * mean).clamp(min=0.0)
        m.bias.add_(mean.to(m.bias))
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.weight.copy_((var + m.eps).sqrt().to(m.weight))
    return len(norms)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _lr_factor(step: int, total: int, schedule) -> float:
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name == "constant":
        return 1.0
    progress = min(1.0, (step - schedule.warmup_steps) / max(1, total - schedule.warmup_steps))
    if schedule.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return (1.0 - progress) ** schedule.power


class Trainer:
    """One training run: model, optimiser, schedule and data, driven step by step."""

    def __init__(self, config: TrainConfig, log=print):
        self.config = config
        self.output_dir = Path(config.output_dir)
        torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        self.device = select_device(config.train.device, log)
        # network "click": the early-fusion click network, trained whole on objects (one forward per
        # click round); "openpixel": the road network, semantic head and/or its late-fusion click decoder.
        self.click_network = config.network == "click"
        self.checkpoint_format = CLICK_NETWORK_CHECKPOINT if self.click_network else CHECKPOINT_FORMAT
        self.prompt_stride = PROMPT_STRIDE if self.click_network else GRID_STRIDE
        num_classes = 2 if self.click_network else config.model.num_classes
        self.model = ClickNetwork(config.model) if self.click_network else OpenPixel(config.model)
        self.dataset = make_dataset(config.data, num_classes, config.seed)
        self.validation_set = make_validation_set(config.data, num_classes, config.seed) \
            if config.train.validate_every else None
        self.augmenter = SampleAugmenter(config.data, 0 if self.click_network else config.model.conditioning_size)
        if config.pretrained_tflite and not config.init_checkpoint:
            self.model.load_pretrained_backbone(config.pretrained_tflite)
            if not config.train.freeze_backbone_bn:
                calibrate_batchnorm(self.model.backbone, self._calibration_batches())
        if config.init_checkpoint:
            self._load_weights(config.init_checkpoint)
        self.model.to(self.device)
        weights = class_weights(class_pixel_counts(self.dataset, num_classes),
                                config.loss.class_weighting, config.loss.max_class_weight) \
            if config.loss.class_weighting != "none" and not config.train.freeze_encoder \
            and not self.click_network else None
        self.ce_weights = weights.to(self.device) if weights is not None else None
        self.best_miou = None
        self.steps_per_epoch = max(1, len(self.dataset) // config.train.batch_size)
        self.total_steps = config.train.epochs * self.steps_per_epoch
        if config.train.max_steps is not None:
            self.total_steps = min(self.total_steps, config.train.max_steps)
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: _lr_factor(step, self.total_steps, config.schedule))
        self.step = 0

    def _load_weights(self, path) -> None:
        """Start from another run's weights (an OpenPixel checkpoint of the same architecture)."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != self.checkpoint_format:
            raise ValueError(f"init_checkpoint {path} is not an OpenPixel checkpoint of this kind "
                             f"({self.checkpoint_format})")
        if ckpt["model_config"] != self.config.model.to_dict():
            raise ValueError(f"init_checkpoint {path} has another model configuration")
        self.model.load_state_dict(ckpt["model"])

    def _make_optimizer(self) -> torch.optim.Optimizer:
        opt = self.config.optimizer
        if self.config.train.freeze_encoder:
            for p in self.model.parameters():
                p.requires_grad_(False)
            decoder = list(self.model.decoder.parameters())
            for p in decoder:
                p.requires_grad_(True)
            groups = [{"params": decoder, "lr": opt.lr}]
        else:
            backbone = list(self.model.backbone.parameters())
            backbone_ids = {id(p) for p in backbone}
            rest = [p for p in self.model.parameters() if id(p) not in backbone_ids]
            groups = [{"params": backbone, "lr": opt.lr * opt.backbone_lr_scale}, {"params": rest, "lr": opt.lr}]
        if opt.name == "sgd":
            return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
        return torch.optim.AdamW(groups, lr=opt.lr, weight_decay=opt.weight_decay)

    # -- checkpoints ------------------------------------------------------------------
    def _continue_schedule_at(self, step: int) -> None:
        self.step = step
        self.scheduler.last_epoch = step
        for group, base_lr, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                          self.scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(step)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        seed = self.config.seed + step  # random streams from the point, so a resume from it is repeatable
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def checkpoint(self) -> dict:
        """Everything a resume needs, in types ``torch.load(weights_only=True)`` accepts."""
        np_state = np.random.get_state(legacy=False)
        return {
            "format": self.checkpoint_format,
            "model_config": self.config.model.to_dict(),
            "model_info": vars(self.config.model_info).copy(),
            "train_config": self.config.to_dict(),
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "best_miou": self.best_miou,
            "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                    "numpy": {"bit_generator": np_state["bit_generator"],
                              "key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                              "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])}},
        }

    def save_checkpoint(self, path: Optional[Path] = None) -> Path:
        """Write the checkpoint atomically (``last.pt`` in the output folder by default)."""
        path = Path(path) if path else self.output_dir / "last.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.checkpoint(), tmp)
        os.replace(tmp, path)
        return path

    def resume(self, path) -> None:
        """Restore model, optimiser, scheduler, step and RNG states from a checkpoint (exact), or
        model, step and schedule from a weights-only resume point (see :func:`write_resume_point`)."""
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt.get("format") != self.checkpoint_format:
            raise ValueError(f"{path} is not an OpenPixel checkpoint of this kind ({self.checkpoint_format})")
        if ckpt["model_config"] != self.config.model.to_dict():
            raise ValueError(f"{path} was trained with another model configuration")
        self.model.load_state_dict(ckpt["model"])
        if "optimizer" not in ckpt:
            self._continue_schedule_at(int(ckpt["step"]))
            return
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        self.best_miou = ckpt.get("best_miou")
        rng = ckpt["rng"]
        python_state = rng["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        torch.set_rng_state(rng["torch"].cpu())
        n = rng["numpy"]
        np.random.set_state({"bit_generator": n["bit_generator"],
                             "state": {"key": np.asarray(n["key"], np.uint32), "pos": n["pos"]},
                             "has_gauss": n["has_gauss"], "gauss": n["gauss"]})

    # -- one step ---------------------------------------------------------------------
    def _calibration_batches(self, count: int = 4):
        """A few fixed, augmented training batches (their own seed) for :func:`calibrate_batchnorm`."""
        rng = np.random.default_rng([self.config.seed, 3])
        b = self.config.train.batch_size
        for _ in range(count):
            images = []
            for index in rng.permutation(len(self.dataset))[:b]:
                rgb, _, _ = self.augmenter(*self.dataset[int(index)], rng)
                images.append(to_model_input(rgb))
            yield torch.from_numpy(np.stack(images))

    def _batch(self, rng: np.random.Generator):
        epoch, position = divmod(self.step, self.steps_per_epoch)
        order = np.random.default_rng([self.config.seed, epoch, 1]).permutation(len(self.dataset))
        b = self.config.train.batch_size
        data = self.config.data
        images, labels, conditioning, objects = [], [], [], []
        for index in order[position * b:(position + 1) * b]:
            rgb, label, vector = self.augmenter(*self.dataset[int(index)], rng)
            images.append(to_model_input(rgb))
            labels.append(label.astype(np.int64))
            conditioning.append(vector)
            if self.config.clicks.enabled:
                objects.append(pick_object(label, rng, data.ignore_index, data.background_classes,
                                           whole_classes=(WHOLE_OBJECT,) if data.kind == "objects" else ()))
        vectors = np.stack(conditioning) if conditioning and conditioning[0] is not None else None
        return np.stack(images), np.stack(labels), vectors, objects

    def _prompts(self, prompts: list, previous: list, input_hw) -> torch.Tensor:
        """Prompt maps of each sample's clicks and scribbles (:class:`Click` and :class:`Scribble`)."""
        sigma = self.config.clicks.sigma
        maps = []
        for items, prev in zip(prompts, previous):
            clicks = [p for p in items if isinstance(p, Click)]
            strokes = [p for p in items if isinstance(p, Scribble)]
            maps.append(render_prompt_maps(
                input_hw, [c.xy for c in clicks if c.positive], [c.xy for c in clicks if not c.positive],
                previous_mask=prev, sigma=sigma, stride=self.prompt_stride,
                positive_scribbles=[s.points for s in strokes if s.positive],
                negative_scribbles=[s.points for s in strokes if not s.positive]))
        return torch.from_numpy(np.stack(maps)).to(self.device)

    def _start_prompts(self, gts, ignore, rng) -> tuple:
        """Each object's starting prompts, and whether it is a scribble sample (corrected by strokes)."""
        cfg = self.config
        # Scribble samples start from one positive stroke and are corrected by strokes; the
        # others by clicks. (No draw at all when scribble_prob is 0, so click-only runs keep their RNG.)
        strokes = [bool(cfg.clicks.scribble_prob and rng.random() < cfg.clicks.scribble_prob) for _ in gts]
        clicks = [[scribble_in(gt & ~ign, True, rng)] if stroke else
                  random_initial_clicks(gt, rng, cfg.clicks.max_initial_positive,
                                        cfg.clicks.max_initial_negative, ignore=ign)
                  for gt, ign, stroke in zip(gts, ignore, strokes)]
        return [[p for p in items if p is not None] for items in clicks], strokes

    def _correct(self, full_logits: torch.Tensor, gts, ignore, strokes, clicks, rng) -> list:
        """One simulation round: a click (or stroke) in each sample's largest error; returns the
        previous masks that evaluation would feed next (the binary prediction at the input's size)."""
        for i, gt in enumerate(gts):
            correct = next_scribble if strokes[i] else next_click
            click = correct(full_logits[i, 0].cpu().numpy() > 0, gt, ignore[i], rng)
            if click is not None:
                clicks[i].append(click)
        return list((full_logits[:, 0] > 0).float().cpu().numpy())

    def _drop_previous(self, previous: list, rng) -> list:
        # Some samples lose their previous mask, so the model must find the object's extent
        # from the prompts alone and cannot read "no mask yet" as "all background".
        rate = self.config.clicks.previous_mask_dropout
        return [None if rng.random() < rate else prev for prev in previous] if rate else previous

    def _click_network_step(self, rng: np.random.Generator) -> dict:
        """One step of the click network: starting prompts, 0..N no-grad rounds in eval mode (each
        adds a click in the largest error, feeding the prediction back as the previous mask), then
        the loss on the last round's prompts. The whole network learns."""
        cfg = self.config
        images, labels, _, objects = self._batch(rng)
        keep = [i for i, o in enumerate(objects) if o is not None]
        if not keep:  # no object in the batch: nothing to learn
            self._optimise(None)
            return {"total": 0.0}
        gts = [objects[i] for i in keep]
        ignore = [labels[i] == cfg.data.ignore_index for i in keep]
        # Contiguous NCHW (fancy indexing keeps the stacked batch's channels-last strides, for which
        # oneDNN picks other kernels, with other last bits): the layout the shipped run trained with.
        image_t = torch.from_numpy(np.ascontiguousarray(images[keep])).to(self.device)
        input_hw = images.shape[2:]
        clicks, strokes = self._start_prompts(gts, ignore, rng)
        previous = [None] * len(keep)
        self.model.eval()  # the rounds predict as evaluation does (BatchNorm running statistics)
        with torch.no_grad():
            for _ in range(int(rng.integers(0, cfg.clicks.max_iterations + 1))):
                mask_logits, _ = self.model(image_t, self._prompts(clicks, previous, input_hw))
                full = F.interpolate(mask_logits, size=input_hw, mode="bilinear", align_corners=False)
                previous = self._correct(full, gts, ignore, strokes, clicks, rng)
                if not cfg.clicks.previous_mask:
                    previous = [None] * len(keep)
        previous = self._drop_previous(previous, rng)
        self.model.train()
        mask_logits, score = self.model(image_t, self._prompts(clicks, previous, input_hw))
        target = torch.from_numpy(np.stack(gts)[:, None].astype(np.float32)).to(self.device)
        valid = torch.from_numpy(~np.stack(ignore)[:, None]).float().to(self.device)
        losses = click_mask_loss(mask_logits, score, target, cfg.loss, valid)
        self._optimise(losses["total"])
        return {k: float(v.detach()) for k, v in losses.items()}

    def _optimise(self, loss: Optional[torch.Tensor]) -> None:
        """End a step: back-propagate ``loss`` and update (None: nothing to learn), then advance the
        schedule and the step either way."""
        self.optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1

    def train_step(self) -> dict:
        """Run one optimisation step; returns its losses (floats)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.step, 2])
        if self.click_network:
            return self._click_network_step(rng)
        images, labels, vectors, objects = self._batch(rng)
        frozen = cfg.train.freeze_encoder
        self.model.train(not frozen)
        if cfg.train.freeze_backbone_bn:
            for m in self.model.backbone.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        image_t = torch.from_numpy(images).to(self.device)
        label_t = torch.from_numpy(labels).to(self.device)
        conditioning_t = torch.from_numpy(vectors).to(self.device) if vectors is not None else None
        input_hw = images.shape[2:]
        if frozen:  # the encoder is the init checkpoint's, in eval mode: only the decoder learns
            with torch.no_grad():
                features_s4, features_s8, _ = self.model.encode(image_t, conditioning_t)
            total = features_s4.new_zeros(())
            losses = {"total": total}
        else:
            features_s4, features_s8, semantic_logits = self.model.encode(image_t, conditioning_t)
            losses = semantic_loss(semantic_logits, label_t, cfg.loss, self.ce_weights)
            total = losses["total"]

        has_object = [o is not None for o in objects]  # empty when clicks are disabled
        if any(has_object):
            keep = [i for i, ok in enumerate(has_object) if ok]
            gts = [objects[i] for i in keep]
            ignore = [labels[i] == cfg.data.ignore_index for i in keep]
            clicks, strokes = self._start_prompts(gts, ignore, rng)
            previous = [None] * len(keep)
            f4, f8 = features_s4[keep], features_s8[keep]
            # The simulation rounds predict as evaluation does: the decoder in eval mode, so its
            # BatchNorms use their running statistics and these passes do not update them (RITM).
            self.model.decoder.eval()
            with torch.no_grad():
                for _ in range(int(rng.integers(0, cfg.clicks.max_iterations + 1))):
                    prompts = self._prompts(clicks, previous, input_hw)
                    mask_logits, _ = self.model.decode(f4.detach(), f8.detach(), prompts)
                    full = F.interpolate(mask_logits, size=input_hw, mode="bilinear", align_corners=False)
                    # What evaluation feeds (eval/click_protocol.py through the engine): the binary
                    # prediction at the input's size, area-averaged onto the prompt grid by
                    # render_prompt_maps; not the sigmoid on the grid (issue 12, item 2).
                    fed = self._correct(full, gts, ignore, strokes, clicks, rng)
                    if cfg.clicks.previous_mask:
                        previous = fed
            previous = self._drop_previous(previous, rng)
            self.model.decoder.train()
            mask_logits, score = self.model.decode(f4, f8, self._prompts(clicks, previous, input_hw))
            target = torch.from_numpy(np.stack(gts)[:, None].astype(np.float32)).to(self.device)
            valid = torch.from_numpy(~np.stack(ignore)[:, None]).float().to(self.device)
            mask_terms = click_mask_loss(mask_logits, score, target, cfg.loss, valid)
            losses.update({k: v for k, v in mask_terms.items() if k != "total"})
            total = total + mask_terms["total"]

        # (a frozen encoder with no click object in the batch: nothing to learn)
        self._optimise(total if total.requires_grad else None)
        out = {k: float(v.detach()) for k, v in losses.items() if k != "total"}  # (syncs the device)
        out["total"] = float(total.detach())
        return out

    # -- validation and logs ----------------------------------------------------------
    def validate(self) -> Optional[dict]:
        """Score the held-out set; keeps ``best.pt`` when mIoU improves. None without a held-out set."""
        if self.validation_set is None:
            return None
        cfg = self.config
        names = list(cfg.model_info.classes) or [str(i) for i in range(cfg.model.num_classes)]
        result = evaluate(self.model, self.validation_set, names, cfg.data.ignore_index, self.device,
                          cfg.train.validation_batch, conditioning=cfg.model.conditioning_size > 0)
        if self.best_miou is None or result["miou"] > self.best_miou:
            self.best_miou = result["miou"]
            shutil.copyfile(self.save_checkpoint(), self.output_dir / "best.pt")
            result["best"] = True
        return result

    def _csv_columns(self) -> list:
        names = [] if self.click_network else \
            (list(self.config.model_info.classes) or [str(i) for i in range(self.config.model.num_classes)])
        return (["step", "epoch", "lr", "loss", "images_per_s", "elapsed_s", "val_miou", "val_pixel_acc"]
                + [f"val_iou_{name}" for name in names])

    def _open_csv(self, path: Path):
        """Open the CSV log for appending; on resume, rows past the resumed step are dropped."""
        columns = self._csv_columns()
        rows = []
        if path.is_file() and self.step > 0:
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in columns} for r in rows)
        return columns

    def run(self, max_steps: Optional[int] = None, log=print) -> list:
        """Train until ``total_steps`` (or ``max_steps`` in total); checkpoint on schedule and at the end."""
        cfg = self.config.train
        stop = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        history = []
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir / "log.jsonl"
        csv_path = self.output_dir / "log.csv"
        columns = self._open_csv(csv_path)
        first_step, started_run = self.step, time.perf_counter()
        if log:
            log(f"training on {self.device.type}: steps {self.step}..{stop} of {self.total_steps}, "
                f"batch {cfg.batch_size}, {len(self.dataset)} training images"
                + (f", {len(self.validation_set)} held out" if self.validation_set is not None else ""))
        window = []
        while self.step < stop:
            started = time.perf_counter()
            losses = self.train_step()
            step_s = time.perf_counter() - started
            window = (window + [step_s])[-20:]
            images_per_s = cfg.batch_size / (sum(window) / len(window))
            entry = {"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch,
                     "lr": self.scheduler.get_last_lr()[-1], **losses,
                     "step_s": round(step_s, 3), "images_per_s": round(images_per_s, 2)}
            history.append(entry)
            with log_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            validation = None
            if cfg.validate_every and (self.step % cfg.validate_every == 0 or self.step == self.total_steps):
                validation = self.validate()
                entry["val_miou"] = validation["miou"]
            elapsed = time.perf_counter() - started_run
            if self.step % cfg.log_every == 0 or self.step == stop or validation:
                row = {"step": self.step, "epoch": entry["epoch"], "lr": f"{entry['lr']:.6g}",
                       "loss": f"{losses['total']:.5f}", "images_per_s": entry["images_per_s"],
                       "elapsed_s": round(elapsed, 1)}
                if validation:
                    row.update(val_miou=validation["miou"], val_pixel_acc=validation["pixel_acc"])
                    row.update({f"val_iou_{k}": v for k, v in validation["per_class_iou"].items()})
                with csv_path.open("a", newline="") as f:
                    csv.DictWriter(f, columns).writerow({k: row.get(k, "") for k in columns})
            if log and (self.step % cfg.log_every == 0 or self.step == stop):
                eta = (stop - self.step) * elapsed / max(1, self.step - first_step)
                log(f"step {self.step}/{stop} ({100 * self.step / stop:.0f}%)  loss {losses['total']:.4f}  "
                    f"{images_per_s:.1f} img/s  elapsed {_duration(elapsed)}  ETA {_duration(eta)}")
            if log and validation:
                worst = sorted(validation["per_class_iou"].items(), key=lambda kv: (kv[1] is None, kv[1] or 0))[:3]
                log(f"validation at step {self.step}: mIoU {100 * validation['miou']:.1f}% "
                    f"(best {100 * self.best_miou:.1f}%), pixel accuracy {100 * validation['pixel_acc']:.1f}%; "
                    f"weakest: {', '.join(f'{k} {v:.2f}' for k, v in worst if v is not None)}")
            if self.step % cfg.checkpoint_every == 0 and self.step < stop:
                self.save_checkpoint()
            if cfg.keep_every and self.step % cfg.keep_every == 0:
                shutil.copyfile(self.save_checkpoint(), self.output_dir / f"step_{self.step}.pt")
        self.save_checkpoint()
        return history


RESUME_POINT_KEYS = ("format", "model_config", "model_info", "train_config", "model", "step", "epoch", "best_miou")


def write_resume_point(checkpoint: Path, path: Path) -> int:
    """Write ``checkpoint``'s weights and step to ``path``: the weights-only resume point (a third of a
    checkpoint's size) committed at one fixed path when a run spans machines. A run resumed from it
    (``Trainer.resume``) follows the same schedule, but its optimiser moments and random streams start
    afresh: close, not bit for bit. Returns the step."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint to take a resume point from: {checkpoint}")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: ckpt[key] for key in RESUME_POINT_KEYS}, path)
    return int(ckpt["step"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openpixel_ros.training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training configuration (YAML)")
    parser.add_argument("--resume", help="checkpoint to resume from, or 'auto' for <output_dir>/last.pt if present")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    parser.add_argument("--output-dir", help="override the configuration's output_dir")
    parser.add_argument("--write-resume-point", metavar="PATH",
                        help="write <output_dir>/last.pt's weights and step to PATH (weights only, to commit when "
                             "a run spans machines; --resume PATH continues from it) and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.output_dir:
            config.output_dir = args.output_dir
        if args.write_resume_point:
            step = write_resume_point(Path(config.output_dir) / "last.pt", Path(args.write_resume_point))
            print(f"wrote {args.write_resume_point} (step {step}, weights only)")
            return 0
        trainer = Trainer(config)
        if args.resume:
            path = Path(config.output_dir) / "last.pt" if args.resume == "auto" else Path(args.resume)
            if path.is_file():
                trainer.resume(path)
                print(f"resumed from {path} at step {trainer.step}")
            elif args.resume != "auto":
                raise FileNotFoundError(f"checkpoint not found: {path}")
        trainer.run(args.max_steps)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {Path(config.output_dir) / 'last.pt'}")
    if trainer.best_miou is not None:
        print(f"best validation mIoU {100 * trainer.best_miou:.2f}%: {Path(config.output_dir) / 'best.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
