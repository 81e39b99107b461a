"""Figures: image grids, clean / perturbation / adversarial views, curves.

Every function draws on a Matplotlib axes (or makes a figure) and returns the figure, so a chapter
can save it or show it.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) tensor -> (H, W) or (H, W, 3) array for ``imshow``.
    """
    x = x.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 3:
        x = x.permute(1, 2, 0)
    return x.numpy()


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               scale: float = 1.4, cmap: str = "gray", suptitle: str | None = None,
               title_colors: Sequence[str] | None = None) -> plt.Figure:
    """Images (N, C, H, W) in [0, 1] in a grid, with optional titles under each.
    """
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_numpy_image(images[i]).clip(0, 1), cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                color = "black" if title_colors is None else title_colors[i]
                ax.set_title(titles[i], fontsize=8, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def perturbation_view(x: torch.Tensor, x_adv: torch.Tensor, clean_titles: Sequence[str] | None = None,
                      adv_titles: Sequence[str] | None = None, amplify: float | None = None,
                      cmap: str = "gray") -> plt.Figure:
    """Rows of (clean, perturbation, adversarial). The perturbation is drawn as
    ``0.5 + amplify * delta`` (default: scaled so the largest ``|delta|`` reaches the range's edge).
    """
    n = x.shape[0]
    delta = (x_adv - x).detach()
    amp = amplify if amplify is not None else 0.5 / max(delta.abs().max().item(), 1e-12)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2.1 * n), squeeze=False)
    for i in range(n):
        panels = [(x[i], "clean" if clean_titles is None else clean_titles[i]),
                  ((0.5 + amp * delta[i]).clamp(0, 1), f"perturbation (x{amp:.3g})"),
                  (x_adv[i], "adversarial" if adv_titles is None else adv_titles[i])]
        for ax, (img, title) in zip(axes[i], panels):
            ax.imshow(to_numpy_image(img).clip(0, 1), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def curves(df: pd.DataFrame, x: str, ys: Sequence[str] | str, hue: str | None = None, ax=None,
           xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
           marker: str = "o") -> plt.Figure:
    """Line plot of columns ``ys`` against ``x`` (one line per column, or per ``hue`` value).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    else:
        fig = ax.figure
    ys = [ys] if isinstance(ys, str) else list(ys)
    if hue is not None:
        for key, part in df.groupby(hue, sort=False):
            for y in ys:
                ax.plot(part[x], part[y], marker=marker, label=f"{key}" if len(ys) == 1 else f"{key}: {y}")
    else:
        for y in ys:
            ax.plot(df[x], df[y], marker=marker, label=y)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or (ys[0] if len(ys) == 1 else "value"))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def decision_boundary(model: torch.nn.Module, points: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                      *, embed=None, ax=None, extent: tuple[float, float, float, float] | None = None,
                      resolution: int = 150, title: str | None = None, test_points=None, test_labels=None,
                      colorbar: bool = False) -> plt.Figure:
    """A binary classifier's p(y=1 | x) over a 2-D plane, its 0.5 contour (the decision boundary), and
    the (training) points coloured by label; optional faint test points.

    ``embed(grid2d) -> inputs`` maps plane points to the model's input space (e.g.
    :meth:`advlib.data.Synthetic2D.embed`); default: the model takes the 2-D points themselves.
    ``extent`` = (xmin, xmax, ymin, ymax), default: the points' range plus a margin. The model runs in
    eval mode (restored). Returns the figure.
    """
    from .utils import eval_mode, model_device

    pts = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=float)
    lab = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 3.6))
    else:
        fig = ax.figure
    if extent is None:
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.35 * (hi - lo).max()
        extent = (lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad)
    g0, g1 = np.meshgrid(np.linspace(extent[0], extent[1], resolution), np.linspace(extent[2], extent[3], resolution))
    grid = torch.tensor(np.c_[g0.ravel(), g1.ravel()], dtype=torch.float32)
    inputs = embed(grid) if embed is not None else grid
    with torch.no_grad(), eval_mode(model):
        prob = model(inputs.to(model_device(model))).float().softmax(1)[:, 1].cpu().numpy().reshape(g0.shape)
    cs = ax.contourf(g0, g1, prob, levels=np.linspace(0, 1, 11), cmap="coolwarm", alpha=0.55)
    ax.contour(g0, g1, prob, levels=[0.5], colors="k", linewidths=1.5)
    if test_points is not None:
        tp = np.asarray(test_points.detach().cpu() if isinstance(test_points, torch.Tensor) else test_points)
        tl = np.asarray(test_labels.detach().cpu() if isinstance(test_labels, torch.Tensor) else test_labels)
        ax.scatter(tp[:, 0], tp[:, 1], c=tl, cmap="coolwarm", s=3, alpha=0.35, vmin=0, vmax=1)
    ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap="coolwarm", s=45, edgecolor="k", vmin=0, vmax=1)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        fig.colorbar(cs, ax=ax, label="p(y=1 | x)")
    return fig
