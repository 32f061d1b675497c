"""Images on the device: rotation, training augmentation (batched, no per-image Python work)
and padding.

Rotation convention: a positive angle turns the image content counter-clockwise as displayed
(row 0 at the top), so rotating by 90 degrees equals ``torch.rot90(x, 1, dims=(2, 3))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.data.names import AUGMENTS, PADS
from ablate.errors import DataError, expect_one_of


def rotate(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its own angle (bilinear, zeros outside).

    x: (N, C, H, W) float; angles_deg: (N,) degrees, on the same device. Returns (N, C, H, W).
    """
    theta = torch.deg2rad(angles_deg.to(dtype=x.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # affine_grid maps each output pixel (x right, y down, in [-1, 1]) to the input pixel it reads.
    # Counter-clockwise content rotation by a reads the input at R(-a) in y-down coordinates.
    matrix = torch.stack([torch.stack([cos, -sin, zero], dim=1), torch.stack([sin, cos, zero], dim=1)], dim=1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, kind: str, generators: list[torch.Generator]) -> torch.Tensor:
    """Training augmentation of a batch made of len(generators) equal blocks of images, block s
    drawn from generator s (one per run of a fused group; each must live on x's device).

    x: (S * b, C, H, W) in [0, 1]. kind: "none", "rotation" (a uniform turn in [0, 360)) or
    "paper" (paper_augment). No per-image Python work is done.
    """
    expect_one_of("augment", kind, AUGMENTS, DataError)
    if kind == "none":
        return x
    b = x.shape[0] // len(generators)

    def draw(*shape: int) -> torch.Tensor:
        return torch.cat([torch.rand(b, *shape, generator=g, device=x.device) for g in generators])

    if kind == "rotation":
        return rotate(x, draw() * 360.0)
    return paper_augment(x, draw() * 360.0 - 180.0, draw(2) < 0.5)


def paper_augment(x: torch.Tensor, angles_deg: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The seed paper's training augmentation: upscale H x W images three times (bilinear), rotate
    each by its angle (bilinear), flip horizontally where flips[:, 0] and vertically where
    flips[:, 1], downscale back (bilinear, antialiased) and clip to [0, 1].

    x: (N, C, H, W); angles_deg: (N,) degrees, uniform in [-180, 180) in training; flips: (N, 2) bool.
    """
    h, w = x.shape[-2:]
    big = F.interpolate(x, size=(3 * h, 3 * w), mode="bilinear", align_corners=False)
    big = rotate(big, angles_deg)
    big = torch.where(flips[:, 0].view(-1, 1, 1, 1), big.flip(-1), big)
    big = torch.where(flips[:, 1].view(-1, 1, 1, 1), big.flip(-2), big)
    small = F.interpolate(big, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return small.clamp_(0.0, 1.0)


def pad_images(x: torch.Tensor, size: int, where: str = "symmetric") -> torch.Tensor:
    """Zero-pad (N, C, H, W) images to (N, C, size, size): evenly on both sides ("symmetric"), or
    all on the right and bottom ("right-bottom", the seed paper's 28 -> 29)."""
    h, w = x.shape[-2:]
    expect_one_of("pad", where, PADS, DataError)
    if where == "right-bottom":
        if size < max(h, w):
            raise DataError(f"pad_to: expected a size >= {max(h, w)}, found {size}")
        return F.pad(x, (0, size - w, 0, size - h))
    if size < max(h, w) or (size - h) % 2 or (size - w) % 2:
        raise DataError(
            f"pad_to: expected a size >= {max(h, w)} that differs from {h}x{w} by an even number "
            f'(so 90-degree turns stay exact; pad = "right-bottom" pads one side), found {size}'
        )
    ph, pw = (size - h) // 2, (size - w) // 2
    return F.pad(x, (pw, pw, ph, ph))
