"""zoo.plots: PNGs that open, have the right size, and are written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from zoo.plots import (
    confusion_figure,
    save_confusion_matrix_png,
    save_image_grid_png,
    save_reconstructions_png,
)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _grid_size(count: int, nrow: int, height: int, width: int) -> tuple[int, int]:
    """(width, height) of torchvision's make_grid with padding 2."""
    columns = min(count, nrow)
    rows = -(-count // columns)
    return columns * (width + 2) + 2, rows * (height + 2) + 2


@pytest.mark.parametrize("classes", [2, 20])
def test_confusion_matrix_png(tmp_path: Path, classes: int) -> None:
    generator = torch.Generator().manual_seed(classes)
    confusion = torch.randint(0, 50, (classes, classes), generator=generator)
    confusion[0] = 0  # a class without samples must not break the row normalisation
    names = [f"class_{i}" for i in range(classes)]
    backend = matplotlib.get_backend()
    path = save_confusion_matrix_png(confusion, names, tmp_path / "sub" / "cm.png")
    assert path == tmp_path / "sub" / "cm.png"
    assert _files(path.parent) == ["cm.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 400 and image.height >= 400
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_confusion_matrix_from_lists_and_arrays_is_the_same_figure(tmp_path: Path) -> None:
    """Nested lists, a NumPy array and a tensor draw the same matrix: counts in the cells,
    row fractions as the colours, the class names on both axes, the title."""
    for confusion in ([[3, 1], [0, 2]], np.array([[3, 1], [0, 2]]), torch.tensor([[3, 1], [0, 2]])):
        figure = confusion_figure(confusion, ["a", "b"], title="T")
        axes = figure.axes[0]
        assert [t.get_text() for t in axes.texts] == ["3", "1", "0", "2"]
        np.testing.assert_allclose(axes.images[0].get_array(), [[0.75, 0.25], [0.0, 1.0]])
        assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b"]
        assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b"]
        assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
            "predicted",
            "true",
            "T",
        )
    save_confusion_matrix_png([[3, 1], [0, 2]], ["a", "b"], tmp_path / "list.png", title="T")
    save_confusion_matrix_png(np.array([[3, 1], [0, 2]]), ["a", "b"], tmp_path / "array.png", "T")
    assert (tmp_path / "list.png").read_bytes() == (tmp_path / "array.png").read_bytes()


def test_confusion_matrix_png_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 class names"):
        save_confusion_matrix_png(torch.zeros(3, 3, dtype=torch.int64), ["a", "b"], tmp_path / "x")
    with pytest.raises(ValueError, match="square"):
        save_confusion_matrix_png([[1, 2]], ["a"], tmp_path / "x")
    with pytest.raises(ValueError, match="integer counts"):
        save_confusion_matrix_png(torch.eye(2), ["a", "b"], tmp_path / "x")
    assert _files(tmp_path) == []


def test_confusion_matrix_png_checks_as_the_metrics_do(tmp_path: Path) -> None:
    """One check of a confusion matrix (zoo.metrics'): negative counts and a matrix without
    classes are refused here as for Cohen's kappa."""
    from zoo.metrics import cohen_kappa

    cases: list[tuple[list[list[int]] | np.ndarray | torch.Tensor, str]] = [
        ([[1, -1], [0, 1]], "negative"),
        (np.zeros((0, 0), dtype=np.int64), "at least one class"),
        (torch.zeros(0, 0, dtype=torch.int64), "at least one class"),
    ]
    for matrix, match in cases:
        with pytest.raises(ValueError, match=match):
            save_confusion_matrix_png(matrix, [], tmp_path / "x.png")
        with pytest.raises(ValueError, match=match):
            cohen_kappa(matrix)
    save_confusion_matrix_png(np.array([[3, 1], [0, 2]], np.uint16), ["a", "b"], tmp_path / "u")
    assert _files(tmp_path) == ["u"]


def test_failed_confusion_matrix_write_keeps_the_earlier_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_confusion_matrix_png([[3, 1], [0, 2]], ["a", "b"], tmp_path / "cm.png")
    before = path.read_bytes()

    def broken_savefig(self: Figure, *args: object, **kwargs: object) -> None:
        Path(str(args[0])).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_confusion_matrix_png([[9, 9], [9, 9]], ["a", "b"], path)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["cm.png"]


@pytest.mark.parametrize(
    ("count", "channels", "nrow", "mode"),
    [(16, 3, 8, "RGB"), (10, 1, 4, "L"), (3, 3, 8, "RGB"), (1, 1, 8, "L")],
)
def test_image_grid_png_size(
    tmp_path: Path, count: int, channels: int, nrow: int, mode: str
) -> None:
    images = torch.rand(count, channels, 12, 10) * 2 - 1
    path = save_image_grid_png(images, tmp_path / "grid.png", nrow=nrow)
    assert _files(tmp_path) == ["grid.png"]
    with Image.open(path) as image:
        assert image.mode == mode
        # make_grid returns a single image as is, without the padding
        expected = (10, 12) if count == 1 else _grid_size(count, nrow, 12, 10)
        assert image.size == expected


def test_image_grid_png_maps_the_value_range(tmp_path: Path) -> None:
    images = torch.tensor([-5.0, -1.0, 0.0, 1.0, 7.0, float("nan")]).view(6, 1, 1, 1)
    path = save_image_grid_png(images, tmp_path / "grid.png", nrow=6)
    with Image.open(path) as image:
        pixels = np.asarray(image)
    assert pixels.shape == _grid_size(6, 6, 1, 1)[::-1]
    values = pixels[2, 2::3].tolist()  # the image pixels between the 2-pixel borders
    assert values == [0, 0, 128, 255, 255, 0]
    assert pixels[0].max() == 0  # padding is black

    path = save_image_grid_png(
        torch.full((2, 3, 2, 2), 0.5), tmp_path / "unit.png", value_range=(0.0, 1.0)
    )
    with Image.open(path) as image:
        assert np.asarray(image)[2, 2].tolist() == [128, 128, 128]


def test_image_grid_png_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[N, 1 or 3, H, W\]"):
        save_image_grid_png(torch.zeros(2, 2, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\[N, 1 or 3, H, W\]"):
        save_image_grid_png(torch.zeros(3, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="no images"):
        save_image_grid_png(torch.zeros(0, 3, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="low < high"):
        save_image_grid_png(torch.zeros(1, 3, 4, 4), tmp_path / "x.png", value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="nrow"):
        save_image_grid_png(torch.zeros(1, 3, 4, 4), tmp_path / "x.png", nrow=0)
    assert _files(tmp_path) == []


def test_failed_image_write_keeps_the_earlier_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_image_grid_png(torch.zeros(4, 3, 8, 8), tmp_path / "grid.png")
    before = path.read_bytes()

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(str(fp)).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image_grid_png(torch.ones(4, 3, 8, 8), path)
    with pytest.raises(OSError, match="disk full"):
        save_reconstructions_png(torch.ones(4, 3, 8, 8), torch.ones(4, 3, 8, 8), path)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["grid.png"]


def test_write_into_an_uncreatable_directory_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(OSError):
        save_image_grid_png(torch.zeros(2, 3, 4, 4), blocker / "grid.png")
    with pytest.raises(OSError):
        save_confusion_matrix_png([[1]], ["a"], blocker / "sub" / "cm.png")
    assert _files(tmp_path) == ["not_a_dir"]
    assert blocker.read_text() == "a file where a directory should be"


def test_reconstructions_png(tmp_path: Path) -> None:
    originals = torch.full((10, 3, 6, 5), -1.0)  # black
    reconstructions = torch.full((10, 3, 6, 5), 1.0)  # white
    path = save_reconstructions_png(originals, reconstructions, tmp_path / "r.png", n=4)
    assert _files(tmp_path) == ["r.png"]
    with Image.open(path) as image:
        pixels = np.asarray(image)
    assert pixels.shape == (*_grid_size(8, 4, 6, 5)[::-1], 3)
    assert pixels[2:8, 2:-2].max() == 0  # top row: originals
    assert pixels[10:16, 2:7].min() == 255  # bottom row: reconstructions


def test_reconstructions_png_fewer_than_n(tmp_path: Path) -> None:
    originals = torch.rand(3, 1, 4, 4)
    path = save_reconstructions_png(originals, originals.clone(), tmp_path / "r.png", n=8)
    with Image.open(path) as image:
        assert image.size == _grid_size(6, 3, 4, 4)
    single = save_reconstructions_png(originals[:1], originals[:1], tmp_path / "one.png")
    with Image.open(single) as image:
        assert image.size == _grid_size(2, 1, 4, 4)  # one column, two rows


def test_reconstructions_png_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="originals' shape"):
        save_reconstructions_png(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), tmp_path / "r")
    with pytest.raises(ValueError, match="n must be positive"):
        save_reconstructions_png(
            torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), tmp_path / "r", n=0
        )
    assert _files(tmp_path) == []
