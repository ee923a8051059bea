"""Batched torch image transforms: phone-photo augmentation for training, the fixed
preprocessing for inference. Inputs are uint8 (B, C, C, 3) arrays/tensors of squared images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MEAN = 0.5
STD = 0.25


def to_float(x) -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [0,1]"""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def eval_batch(x_uint8, size: int) -> torch.Tensor:
    """Inference preprocessing: bilinear resize of the cached square to ``size``, normalise."""
    x = to_float(x_uint8)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return normalize(x)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """k in 0..7: rotation by k%4 * 90 degrees, transposed when k >= 4."""
    if k >= 4:
        x = x.transpose(-1, -2)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = _gauss_kernel(sigma)
    r = (len(k) - 1) // 2
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x


def photometric(x: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Exposure, white balance, contrast, saturation, gamma, blur, noise. x float [0,1] (B,3,H,W)."""
    b = x.shape[0]

    def rn(*s):
        return torch.randn(*s, generator=g)

    def ru(lo, hi, *s):
        return lo + (hi - lo) * torch.rand(*s, generator=g)

    s = strength
    exposure = torch.exp(0.20 * s * rn(b, 1, 1, 1))
    wb = torch.exp(0.07 * s * rn(b, 3, 1, 1))
    x = x * exposure * wb
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * ru(1 - 0.25 * s, 1 + 0.3 * s, b, 1, 1, 1) + mean
    gray = x.mean(dim=1, keepdim=True)
    x = gray + (x - gray) * ru(1 - 0.3 * s, 1 + 0.3 * s, b, 1, 1, 1)
    x = x.clamp(1e-4, 1.0) ** torch.exp(0.12 * s * rn(b, 1, 1, 1))
    sel = torch.rand(b, generator=g) < 0.3 * s
    if sel.any():
        sigma = float(ru(0.5, 1.4, 1))
        x[sel] = blur(x[sel], sigma)
    noise = (torch.rand(b, 1, 1, 1, generator=g) < 0.5).float() * ru(0.0, 0.03 * s, b, 1, 1, 1)
    x = x + noise * rn(*x.shape)
    return x.clamp(0.0, 1.0)


def geometric(x: torch.Tensor, size: int, g: torch.Generator, *, rotate: float = math.pi,
              scale=(0.8, 1.2), shift: float = 0.08, flip: bool = True) -> torch.Tensor:
    """Random rotation/scale/flip/shift via one affine grid; output (B,3,size,size)."""
    b = x.shape[0]
    ang = (torch.rand(b, generator=g) * 2 - 1) * rotate
    sc = scale[0] + (scale[1] - scale[0]) * torch.rand(b, generator=g)
    fl = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    tx, ty = ((torch.rand(2, b, generator=g) * 2 - 1) * shift)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * fl, -sin, tx], 1), torch.stack([sin * fl, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x_uint8, size: int, g: torch.Generator) -> torch.Tensor:
    """Training view of a batch of cached squares: geometric + photometric, normalised."""
    x = to_float(x_uint8)
    x = geometric(x, size, g)
    x = photometric(x, g)
    return normalize(x)
