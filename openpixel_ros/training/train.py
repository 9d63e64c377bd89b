"""Train OpenPixel from a YAML configuration, with checkpoints and exact resume.

    python -m openpixel_ros.training.train --config config/train/example.yaml [--resume PATH|auto] [--max-steps N]

Each step trains both heads on one batch: the semantic head on the label
images, and the click head with RITM-style iterative click simulation (random
starting clicks, then 0..N no-grad rounds that each add a click in the
largest error of the current prediction, feeding the prediction back as the
previous mask), all on one encoder pass.

Reproducibility: step ``k`` draws its data order, flips, object choice and
clicks from generators seeded by ``(seed, k)``, and checkpoints hold the
model, optimizer, scheduler, step and the global RNG states, so a run resumed
from a checkpoint continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from openpixel_ros.model.openpixel import CHECKPOINT_FORMAT, OpenPixel
from openpixel_ros.model.prompt_maps import render_prompt_maps

from .click_simulation import next_click, random_initial_clicks
from .config import ConfigError, TrainConfig, load_config
from .data import make_dataset, pick_object, to_model_input
from .losses import click_mask_loss, semantic_loss


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

    def __init__(self, config: TrainConfig):
        self.config = config
        self.output_dir = Path(config.output_dir)
        torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        self.model = OpenPixel(config.model)
        if config.pretrained_tflite:
            self.model.load_pretrained_backbone(config.pretrained_tflite)
        self.dataset = make_dataset(config.data, config.model.num_classes, config.seed)
        self.steps_per_epoch = max(1, len(self.dataset) // config.train.batch_size)
        self.total_steps = config.train.epochs * self.steps_per_epoch
        if config.train.max_steps is not None:
            self.total_steps = min(self.total_steps, config.train.max_steps)
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: _lr_factor(step, self.total_steps, config.schedule))
        self.step = 0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        opt = self.config.optimizer
        backbone = list(self.model.backbone.parameters())
        backbone_ids = {id(p) for p in backbone}
        rest = [p for p in self.model.parameters() if id(p) not in backbone_ids]
        groups = [{"params": backbone, "lr": opt.lr * opt.backbone_lr_scale}, {"params": rest, "lr": opt.lr}]
        if opt.name == "sgd":
            return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
        return torch.optim.AdamW(groups, lr=opt.lr, weight_decay=opt.weight_decay)

    # -- checkpoints ------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Everything a resume needs, in types ``torch.load(weights_only=True)`` accepts."""
        np_state = np.random.get_state(legacy=False)
        return {
            "format": CHECKPOINT_FORMAT,
            "model_config": self.config.model.to_dict(),
            "model_info": vars(self.config.model_info).copy(),
            "train_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
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
        """Restore model, optimiser, scheduler, step and RNG states from a checkpoint."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not an OpenPixel checkpoint")
        if ckpt["model_config"] != self.config.model.to_dict():
            raise ValueError(f"{path} was trained with another model configuration")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        rng = ckpt["rng"]
        python_state = rng["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        torch.set_rng_state(rng["torch"])
        n = rng["numpy"]
        np.random.set_state({"bit_generator": n["bit_generator"],
                             "state": {"key": np.asarray(n["key"], np.uint32), "pos": n["pos"]},
                             "has_gauss": n["has_gauss"], "gauss": n["gauss"]})

    # -- one step ---------------------------------------------------------------------
    def _batch(self, rng: np.random.Generator):
        epoch, position = divmod(self.step, self.steps_per_epoch)
        order = np.random.default_rng([self.config.seed, epoch, 1]).permutation(len(self.dataset))
        b = self.config.train.batch_size
        data = self.config.data
        images, labels, objects = [], [], []
        for index in order[position * b:(position + 1) * b]:
            rgb, label = self.dataset[int(index)]
            if data.hflip and rng.random() < 0.5:
                rgb, label = rgb[:, ::-1], label[:, ::-1]
            images.append(to_model_input(np.ascontiguousarray(rgb)))
            labels.append(label.astype(np.int64))
            objects.append(pick_object(label, rng, data.ignore_index, data.background_classes))
        return np.stack(images), np.stack(labels), objects

    def _prompts(self, clicks: list, previous: list, input_hw) -> torch.Tensor:
        sigma = self.config.clicks.sigma
        maps = [render_prompt_maps(input_hw, [c.xy for c in cs if c.positive], [c.xy for c in cs if not c.positive],
                                   previous_mask=prev, sigma=sigma) for cs, prev in zip(clicks, previous)]
        return torch.from_numpy(np.stack(maps))

    def train_step(self) -> dict:
        """Run one optimisation step; returns its losses (floats)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.step, 2])
        images, labels, objects = self._batch(rng)
        self.model.train()
        if cfg.train.freeze_backbone_bn:
            for m in self.model.backbone.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        image_t, label_t = torch.from_numpy(images), torch.from_numpy(labels)
        input_hw = images.shape[2:]
        features_s4, features_s8, semantic_logits = self.model.encode(image_t)
        losses = semantic_loss(semantic_logits, label_t, cfg.loss)
        total = losses["total"]

        has_object = [o is not None for o in objects]
        if any(has_object):
            keep = [i for i, ok in enumerate(has_object) if ok]
            gts = [objects[i] for i in keep]
            ignore = [labels[i] == cfg.data.ignore_index for i in keep]
            clicks = [random_initial_clicks(gt, rng, cfg.clicks.max_initial_positive, cfg.clicks.max_initial_negative,
                                            ignore=ign) for gt, ign in zip(gts, ignore)]
            previous = [None] * len(keep)
            f4, f8 = features_s4[keep], features_s8[keep]
            with torch.no_grad():
                for _ in range(int(rng.integers(0, cfg.clicks.max_iterations + 1))):
                    prompts = self._prompts(clicks, previous, input_hw)
                    mask_logits, _ = self.model.decode(f4.detach(), f8.detach(), prompts)
                    full = F.interpolate(mask_logits, size=input_hw, mode="bilinear", align_corners=False)
                    for i, gt in enumerate(gts):
                        click = next_click(full[i, 0].numpy() > 0, gt, ignore[i], rng)
                        if click is not None:
                            clicks[i].append(click)
                    if cfg.clicks.previous_mask:
                        previous = list(torch.sigmoid(mask_logits[:, 0]).numpy())
            mask_logits, score = self.model.decode(f4, f8, self._prompts(clicks, previous, input_hw))
            target = torch.from_numpy(np.stack(gts)[:, None].astype(np.float32))
            valid = torch.from_numpy(~np.stack(ignore)[:, None]).float()
            mask_terms = click_mask_loss(mask_logits, score, target, cfg.loss, valid)
            losses.update({k: v for k, v in mask_terms.items() if k != "total"})
            total = total + mask_terms["total"]

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        out = {k: float(v.detach()) for k, v in losses.items() if k != "total"}
        out["total"] = float(total.detach())
        return out

    def run(self, max_steps: Optional[int] = None, log=print) -> list:
        """Train until ``total_steps`` (or ``max_steps`` in total); checkpoint on schedule and at the end."""
        stop = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        history = []
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir / "log.jsonl"
        while self.step < stop:
            started = time.perf_counter()
            losses = self.train_step()
            entry = {"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch,
                     "lr": self.scheduler.get_last_lr()[-1], **losses,
                     "step_s": round(time.perf_counter() - started, 3)}
            history.append(entry)
            with log_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            if log and (self.step % self.config.train.log_every == 0 or self.step == stop):
                log(json.dumps(entry))
            if self.step % self.config.train.checkpoint_every == 0 and self.step < stop:
                self.save_checkpoint()
        self.save_checkpoint()
        return history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openpixel_ros.training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training configuration (YAML)")
    parser.add_argument("--resume", help="checkpoint to resume from, or 'auto' for <output_dir>/last.pt if present")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    parser.add_argument("--output-dir", help="override the configuration's output_dir")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.output_dir:
            config.output_dir = args.output_dir
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
