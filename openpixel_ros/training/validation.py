"""Held-out scoring during training: mIoU and per-class IoU at the dataset's full size.

Each image goes through what the node does to a still frame: default lighting
adaptation (which may correct it) and its conditioning vector, then the
encoder; logits are upsampled to the label size and argmaxed.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from openpixel_ros.adaptation import LightingAdapter
from openpixel_ros.inference.confusion_matrix import ConfusionMatrix

from .data import to_model_input


@torch.no_grad()
def evaluate(model, dataset, class_names, ignore_index: int, device, batch_size: int = 4,
             conditioning: bool = True) -> dict:
    """``{"miou", "pixel_acc", "per_class_iou": {name: iou}}`` of ``model`` on ``dataset``."""
    adapter = LightingAdapter() if conditioning else None
    matrix = ConfusionMatrix(len(class_names), ignore_index)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            images, vectors, labels = [], [], []
            for index in range(start, min(len(dataset), start + batch_size)):
                frame, label = dataset[index]
                if adapter is not None:  # what the node does to a still frame
                    adapter.reset()
                    frame, state = adapter.process(frame)
                    vectors.append(adapter.conditioning_vector(state))
                images.append(to_model_input(frame))
                labels.append(label)
            image_t = torch.from_numpy(np.stack(images)).to(device)
            vector_t = torch.from_numpy(np.stack(vectors)).to(device) if conditioning else None
            _, _, logits = model.encode(image_t, vector_t)
            logits = F.interpolate(logits, size=image_t.shape[-2:], mode="bilinear", align_corners=False)
            for label, pred in zip(labels, logits.argmax(1).cpu().numpy()):
                matrix.update(label, pred)
    finally:
        model.train(was_training)
    return matrix.summary(class_names)
