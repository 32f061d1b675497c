"""A small image dataset in the npz layout, for `studies/example_npz.toml` and the tests: the
embedded digits (rotated as that source rotates them), resized to 32x32 and coloured into 3
channels (a seeded random colour per image), uint8.

    .venv/bin/python -m ablate.data.example build/example/digits32.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from ablate.data.sources import load_dataset


def write_example_npz(
    path: str | Path, size: int = 32, n_train: int = 1000, n_test: int = 500, seed: int = 0
) -> Path:
    """Write the example .npz (x_train (n_train, 3, size, size) uint8, y_train, x_test, y_test)."""
    data = load_dataset("embedded", limit_train=n_train, limit_test=n_test, subset="stratified")
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        big = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        colour = rng.uniform(0.3, 1.0, (len(x), 3, 1, 1)).astype(np.float32)
        arrays[f"x_{split}"] = np.round(255 * np.clip(big.numpy() * colour, 0, 1)).astype(np.uint8)
        arrays[f"y_{split}"] = y.numpy().astype(np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "build/example/digits32.npz"
    print(f"wrote {write_example_npz(target)}")
