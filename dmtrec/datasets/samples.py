"""What one dataset sample is, and the pieces every dataset shares to build it.

A sample is a dict (see :func:`collate_views` for the batched form the systems receive):

* ``"c2w"``        ``[4, 4]`` float32 camera-to-world (NeRF-synthetic convention: the camera
  looks down its -Z axis, +Y up).
* ``"proj"``       ``[4, 4]`` float32 projection from :func:`dmtrec.render.camera.perspective`.
* ``"img"``        ``[H, W, 4]`` float32 linear RGB and straight (not premultiplied) alpha.
* ``"background"`` ``[H, W, 3]`` float32 linear colour to composite ``img`` over.
* ``"index"``      ``[]`` int64 view index: the frame of a NeRF-synthetic split, the camera
  of a reference-mesh dataset.
* ``"resolution"`` ``(H, W)`` python ints.

Every random choice a sample makes (its background, a reference-mesh camera) comes from
:func:`sample_generator`, keyed by ``(seed, stream, split, index)``: a sample is the same in any
worker, in any order, on any run with the same seed. Training backgrounds are keyed by the *draw*
instead (:class:`RedrawnBackgrounds`): nvdiffrec composites every training iteration over fresh
noise, so a view seen again in a later epoch gets a new background.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

BACKGROUNDS = ("white", "black", "random", "noise")

# Independent random streams per purpose and split, so that e.g. adding validation views
# never changes the training cameras.
STREAM_BACKGROUND = 1
STREAM_CAMERA = 2
STREAM_ORDER = 3
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


def sample_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator for ``(seed, *keys)``, statistically independent of every other key.

    Keys are non-negative ints, e.g. ``(STREAM_BACKGROUND, SPLIT_STREAMS["train"], index)``.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def check_background(kind: str, argument: str) -> str:
    """Return ``kind`` if it names a background, else raise a ValueError naming ``argument``."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"{argument}: unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")
    return kind


def make_background(kind: str, resolution: Sequence[int], generator: torch.Generator) -> Tensor:
    """A linear background ``[H, W, 3]``.

    ``"noise"`` is an independent uniform colour per pixel (what nvdiffrec's training calls
    ``random``, and the training default); ``"random"`` is one uniform colour per image. Both
    keep the network from baking a fixed background colour into the object's silhouette.
    """
    height, width = int(resolution[0]), int(resolution[1])
    if kind == "white":
        return torch.ones(height, width, 3)
    if kind == "black":
        return torch.zeros(height, width, 3)
    if kind == "random":
        return torch.rand(3, generator=generator).expand(height, width, 3).contiguous()
    if kind == "noise":
        return torch.rand(height, width, 3, generator=generator)
    raise ValueError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")


class DrawSampler(torch.utils.data.Sampler):
    """Shuffled view order that also numbers the draws: epoch ``e`` yields ``e * n + i`` for a
    seeded permutation ``i`` of ``range(n)`` (the view is ``draw % n``).

    Lightning calls :meth:`set_epoch` before each epoch (so a resumed run draws what an
    uninterrupted one would); without it each ``iter()`` moves to the next epoch.
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True):
        self.length, self.seed, self.shuffle, self.epoch = int(length), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = (
            torch.randperm(self.length, generator=sample_generator(self.seed, STREAM_ORDER, epoch))
            if self.shuffle
            else torch.arange(self.length)
        )
        return iter((order + epoch * self.length).tolist())


class RedrawnBackgrounds(torch.utils.data.Dataset):
    """A training split whose indices are draws (:class:`DrawSampler`): sample ``draw`` is view
    ``draw % len(views)`` over a background keyed by ``(seed, draw)``, so backgrounds change every
    time a view is drawn (nvdiffrec's per-iteration ``prepare_batch(target, 'random')``) and are
    still the same on every run with the same seed."""

    def __init__(self, views, background: str, seed: int, split: str = "train"):
        self.views, self.background, self.seed = views, check_background(background, "background"), int(seed)
        self.split = SPLIT_STREAMS[split]

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, draw: int) -> Dict:
        return self.__getitems__([draw])[0]

    def __getitems__(self, draws: Sequence[int]) -> List[Dict]:
        indices = [int(d) % len(self.views) for d in draws]
        if hasattr(self.views, "__getitems__"):
            samples = self.views.__getitems__(indices)
        else:
            samples = [self.views[i] for i in indices]
        for draw, sample in zip(draws, samples):
            generator = sample_generator(self.seed, STREAM_BACKGROUND, self.split, int(draw))
            background = make_background(self.background, sample["resolution"], generator)
            sample["background"] = background.to(sample["img"].device)
        return samples


def resize_rgba(img: Tensor, resolution: Sequence[int]) -> Tensor:
    """Area-average ``[H, W, 4]`` straight-alpha linear RGBA to ``resolution (h, w)``.

    Colour is averaged premultiplied by alpha, so that transparent pixels (whose colour is
    meaningless) do not bleed into the silhouette; the result is straight alpha again.
    """
    height, width = int(resolution[0]), int(resolution[1])
    if tuple(img.shape[:2]) == (height, width):
        return img
    rgb, alpha = img[..., :3], img[..., 3:]
    premultiplied = torch.cat([rgb * alpha, alpha], dim=-1).permute(2, 0, 1)[None]
    small = torch.nn.functional.interpolate(premultiplied, size=(height, width), mode="area")[0].permute(1, 2, 0)
    rgb_sum, alpha = small[..., :3], small[..., 3:]
    rgb = torch.where(alpha > 0, rgb_sum / alpha.clamp_min(1e-12), torch.zeros_like(rgb_sum))
    return torch.cat([rgb.clamp(0.0, None), alpha], dim=-1).contiguous()


def collate_views(samples: List[Dict]) -> Dict:
    """Stack samples into a batch: tensors gain a leading ``B``; ``resolution`` stays ``(H, W)``.

    Returns:
        ``c2w [B, 4, 4]``, ``proj [B, 4, 4]``, ``img [B, H, W, 4]``, ``background [B, H, W, 3]``,
        ``index [B]`` int64 and ``resolution (H, W)``.
    """
    resolutions = {tuple(s["resolution"]) for s in samples}
    if len(resolutions) != 1:
        raise ValueError(f"cannot batch views of different resolutions {sorted(resolutions)}")
    batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0] if key != "resolution"}
    batch["resolution"] = resolutions.pop()
    return batch


def as_resolution(value: Sequence[int], argument: str) -> Tuple[int, int]:
    """``(H, W)`` positive ints from an int pair (or a single int for square images)."""
    if isinstance(value, int):
        value = (value, value)
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{argument}: expected (height, width), got {value!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"{argument}: resolution must be positive, got {(height, width)}")
    return height, width
