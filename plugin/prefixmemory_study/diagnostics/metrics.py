"""The numbers behind the diagnostics: linear CKA, the covariance spectrum, Pareto fronts. Pure torch, no model.

Linear CKA (appendix B.3, Kornblith et al. 2019):  ``CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``,
the feature-space form of ``HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))`` with linear kernels and centred columns.

Spectrum (section 5.3, appendix B.1):  ``Sigma = dF^T dF / (n - 1)`` over the centred bias ``dF = F_tuned - F_base``;
its eigenvalues, largest first.
"""

from __future__ import annotations

import math

import torch


def _centred(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).to(torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected a (samples, features) matrix with at least 2 samples, got shape {tuple(x.shape)}.")
    return x - x.mean(dim=0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same m samples: x (m, d1), y (m, d2). In [0, 1]; 1 for x == y."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same samples, got {x.shape[0]} and {y.shape[0]} rows.")
    xc, yc = _centred(x), _centred(y)
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2  # (d2,m) @ (m,d1) -> (d2,d1)
    norm_x = torch.linalg.matrix_norm(xc.T @ xc)
    norm_y = torch.linalg.matrix_norm(yc.T @ yc)
    if norm_x == 0 or norm_y == 0:
        raise ValueError("CKA is undefined for a representation that is constant over the samples.")
    return float(cross / (norm_x * norm_y))


def covariance_spectrum(delta: torch.Tensor, normalize: str = "none") -> torch.Tensor:
    """Eigenvalues of the covariance of ``delta`` (n samples, d features), largest first, clamped at 0.

    ``normalize``: ``none`` (raw variances), ``trace`` (divided by their sum: the share of variance per axis)
    or ``scale`` (delta divided by its RMS first, so adapters of different strength compare by shape only;
    the paper "normalises" without saying how).
    """
    dc = _centred(delta)
    if normalize == "scale":
        rms = dc.pow(2).mean().sqrt()
        dc = dc / rms if rms > 0 else dc
    elif normalize not in ("none", "trace"):
        raise ValueError(f"`normalize` must be one of none, trace, scale; got {normalize!r}.")
    covariance = dc.T @ dc / (dc.shape[0] - 1)  # (d,n) @ (n,d) -> (d,d)
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0).clamp_min(0.0)  # eigvalsh: ascending, tiny negatives
    if normalize == "trace" and eigenvalues.sum() > 0:
        eigenvalues = eigenvalues / eigenvalues.sum()
    return eigenvalues


def effective_rank(eigenvalues: torch.Tensor) -> float:
    """exp(entropy) of the normalised spectrum (Roy and Vetterli 2007): 1 for one axis, d for a flat spectrum."""
    total = eigenvalues.sum()
    if total <= 0:
        return 0.0
    p = eigenvalues[eigenvalues > 0] / total
    return float(math.exp(-(p * p.log()).sum()))


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (higher is better), by increasing x."""
    front = []
    for x, y in sorted(set(points), key=lambda p: (-p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front[::-1]


def log_bins(lengths: torch.Tensor, values: torch.Tensor, bins: int = 24) -> tuple[list[float], list[float]]:
    """Mean of ``values`` in log-spaced bins of ``lengths`` (both 1-D); empty bins are dropped."""
    edges = torch.logspace(0, math.log10(float(lengths.max()) + 1), bins + 1, dtype=torch.float64)
    centres, means = [], []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        mask = (lengths >= low) & (lengths < high)
        if mask.any():
            centres.append(float(lengths[mask].to(torch.float64).mean()))
            means.append(float(values[mask].to(torch.float64).mean()))
    return centres, means
