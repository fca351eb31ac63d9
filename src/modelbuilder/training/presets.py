"""Batch transforms on decoded uint8 images: one preset for training, one for evaluation.

They work on whole batches (N x S x S x 3 uint8, straight from the decoded cache) instead of one
PIL image at a time, and every random choice comes from a generator seeded with (seed, epoch, step):
an augmented batch is a pure function of where it is in training, so a run resumed mid-epoch sees
exactly the batches it would have seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.ops import roi_align


def batch_generator(seed: int, epoch: int, step: int, stream: int = 0) -> torch.Generator:
    """The random choices of one batch; `stream` keeps independent uses (crops, mixing) apart."""
    base = (seed * 1_000_003 + epoch) * 1_000_003 + step
    return torch.Generator().manual_seed((base + stream * 0x9E3779B97F4A7C15) % 2**64)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the training images for one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def to_float(batch_u8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float32 in [0, 1] (the model normalises inside)."""
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class ClassificationPresetEval:
    """Center crop, as prediction does (`results.runtime.center_crop`)."""

    def __init__(self, crop: int) -> None:
        self.crop = crop

    def __call__(self, batch_u8: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        size = batch_u8.shape[1]
        top = (size - self.crop) // 2
        cropped = batch_u8[:, top : top + self.crop, top : top + self.crop]
        return to_float(cropped, channels_last)


class ClassificationPresetTrain:
    """Random resized crop (area in [scale_min, 1], aspect in [3/4, 4/3]) and a horizontal flip."""

    def __init__(self, crop: int, scale_min: float = 0.35, hflip: bool = True) -> None:
        self.crop = crop
        self.scale = (scale_min, 1.0)
        self.log_ratio = (math.log(3 / 4), math.log(4 / 3))
        self.hflip = hflip

    def boxes(self, n: int, size: int, g: torch.Generator) -> torch.Tensor:
        """n crop boxes (x1, y1, x2, y2) in pixels, sampled like torchvision's RandomResizedCrop."""
        tries = 10
        area = size * size * torch.empty(n, tries).uniform_(*self.scale, generator=g)
        ratio = torch.exp(torch.empty(n, tries).uniform_(*self.log_ratio, generator=g))
        w = torch.sqrt(area * ratio).round()
        h = torch.sqrt(area / ratio).round()
        fits = (w <= size) & (h <= size) & (w > 0) & (h > 0)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
        rows = torch.arange(n)
        w = torch.where(first >= 0, w[rows, first.clamp(min=0)], torch.full((n,), float(size)))
        h = torch.where(first >= 0, h[rows, first.clamp(min=0)], torch.full((n,), float(size)))
        x1 = torch.floor(torch.rand(n, generator=g) * (size - w + 1))
        y1 = torch.floor(torch.rand(n, generator=g) * (size - h + 1))
        return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)

    def __call__(self, batch_u8: torch.Tensor, g: torch.Generator, channels_last: bool = False,
                 shard: tuple[int, int] = (0, 1), total: int | None = None) -> torch.Tensor:
        """Augment `batch_u8`, which is the share `shard` = (rank, world) of a global batch of `total`
        images: the random choices are drawn for the whole global batch, so data-parallel ranks
        together see exactly what a single process would."""
        n, size = batch_u8.shape[0], batch_u8.shape[1]
        total = total or n
        rank, world = shard
        boxes = self.boxes(total, size, g)[rank::world]
        flip = (torch.rand(total, generator=g) < 0.5)[rank::world] if self.hflip else torch.zeros(n, dtype=torch.bool)
        x = batch_u8.permute(0, 3, 1, 2).float()
        rois = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], boxes], dim=1)
        # roi_align = bilinear crop-and-resize of every box in one call (sampling_ratio=2 smooths downscaling)
        out = roi_align(x, rois, output_size=self.crop, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        out = torch.where(flip[:, None, None, None], out.flip(3), out).div_(255.0)
        return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class MixBatch:
    """MixUp or CutMix of a training batch (one of the two per batch, at random), with soft targets.

    The same math as torchvision.transforms.v2.MixUp / CutMix, which draw from torch's global
    generator: batches are made in a prefetch thread while the model runs, where a global draw would
    race the training thread's and break the (seed, epoch, step) reproducibility that exact resume
    relies on. Here every draw comes from the batch's own generator.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        self.num_classes = num_classes
        self.alphas = [(kind, alpha) for kind, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha))
                       if alpha > 0]

    def __bool__(self) -> bool:
        return bool(self.alphas)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, soft targets) for images `x` (N x 3 x H x W float) and labels `y`."""
        pick = int(torch.randint(len(self.alphas), (1,), generator=g))
        kind, alpha = self.alphas[pick]
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
        lam = float(rng.beta(alpha, alpha))
        order = torch.randperm(len(x), generator=g)
        if kind == "mixup":
            x = x.mul(lam).add_(x[order], alpha=1.0 - lam)
        else:
            h, w = x.shape[2], x.shape[3]
            cut_h, cut_w = round(h * math.sqrt(1.0 - lam)), round(w * math.sqrt(1.0 - lam))
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y1, y2 = max(0, cy - cut_h // 2), min(h, cy + cut_h // 2)
            x1, x2 = max(0, cx - cut_w // 2), min(w, cx + cut_w // 2)
            x = x.clone()
            x[:, :, y1:y2, x1:x2] = x[order, :, y1:y2, x1:x2]
            lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        one_hot = torch.nn.functional.one_hot(y, self.num_classes).float()
        return x, one_hot.mul(lam).add_(one_hot[order], alpha=1.0 - lam)
