"""PNG figures for training runs: confusion matrices and image grids.

Figures are drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas, never through
pyplot, so the global backend and pyplot's figure list stay untouched. Every file is written
through :func:`zoo._io.atomic_path`: a failed write leaves an earlier file intact.

matplotlib and torchvision are imported by the functions that draw: the task plugins that
import this module load with every ``zoo list``, which must not pay for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from zoo._io import atomic_path
from zoo.metrics import as_confusion_matrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

__all__ = [
    "confusion_figure",
    "save_confusion_matrix_png",
    "save_image_grid_png",
    "save_reconstructions_png",
]

#: make_grid's padding in pixels, between images and around the grid
_PADDING = 2


def save_confusion_matrix_png(
    confusion: Tensor | Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix",
) -> Path:
    """Write the matrix (rows = true class, columns = predicted) as a PNG
    (:func:`confusion_figure`); return its path."""
    figure = confusion_figure(confusion, class_names, title)
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png")
    return target


def confusion_figure(
    confusion: Tensor | Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    title: str = "Confusion matrix",
) -> Figure:
    """The confusion matrix drawn on a figure of its own (rows = true class, columns =
    predicted); ValueError for a matrix :func:`zoo.metrics.as_confusion_matrix` refuses.

    Cells show the counts; the colour is the row-normalised fraction (the recall for the
    diagonal), so rare classes are as visible as common ones. The figure grows with the
    number of classes and the x labels are rotated, which keeps 2 to 20 classes readable.
    """
    matrix = as_confusion_matrix(confusion).numpy()
    size = matrix.shape[0]
    names = [str(name) for name in class_names]
    if len(names) != size:
        raise ValueError(f"got {len(names)} class names for a {size}x{size} confusion matrix")
    support = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(
        matrix, support, out=np.zeros(matrix.shape, dtype=np.float64), where=support > 0
    )

    inches = max(4.0, 1.5 + 0.55 * size)
    fontsize = max(8.0, 12.0 - 0.2 * size)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(inches + 1.2, inches), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("fraction of the true class")
    for row in range(size):
        for column in range(size):
            axes.text(
                column,
                row,
                str(matrix[row, column]),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if fractions[row, column] > 0.5 else "black",
            )
    ticks = list(range(size))
    axes.set_xticks(ticks)
    axes.set_yticks(ticks)
    axes.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=fontsize)
    axes.set_yticklabels(names, fontsize=fontsize)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def _check_images(images: Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} holds no images")


def _grid_image(images: Tensor, nrow: int, value_range: tuple[float, float]) -> Image.Image:
    from PIL import Image
    from torchvision.utils import make_grid

    low, high = float(value_range[0]), float(value_range[1])
    if not low < high:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    if nrow < 1:
        raise ValueError(f"nrow must be positive, got {nrow}")
    pixels = images.detach().to("cpu", torch.float32).nan_to_num(nan=low)
    grid = make_grid(pixels, nrow=nrow, padding=_PADDING, normalize=True, value_range=(low, high))
    array = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if images.shape[1] == 1:
        return Image.fromarray(np.ascontiguousarray(array[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(array))


def _save_png(image: Image.Image, path: str | Path) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG")
    return target


def save_image_grid_png(
    images: Tensor,
    path: str | Path,
    nrow: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Path:
    """Write ``images`` [N, C, H, W] (C = 1 or 3) as one PNG grid, ``nrow`` images a row.

    Values are clipped to ``value_range`` and mapped to 0..255 (NaN to the low end). The grid
    is ``ceil(N / nrow) * (H + 2) + 2`` pixels high and ``min(N, nrow) * (W + 2) + 2`` wide
    (torchvision's ``make_grid``; a single image is saved as is, without the border).
    One channel gives a greyscale PNG, three an RGB one. Returns the path.
    """
    _check_images(images, "images")
    return _save_png(_grid_image(images, nrow, value_range), path)


def save_reconstructions_png(
    originals: Tensor,
    reconstructions: Tensor,
    path: str | Path,
    value_range: tuple[float, float] = (-1.0, 1.0),
    n: int = 8,
) -> Path:
    """Write the first ``n`` originals in a top row and their reconstructions below it."""
    _check_images(originals, "originals")
    if reconstructions.shape != originals.shape:
        raise ValueError(
            f"reconstructions must have the originals' shape {tuple(originals.shape)}, "
            f"got {tuple(reconstructions.shape)}"
        )
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    count = min(n, originals.shape[0])
    pairs = torch.cat(
        [originals[:count].detach(), reconstructions[:count].detach().to(originals.device)]
    )
    return _save_png(_grid_image(pairs, count, value_range), path)
