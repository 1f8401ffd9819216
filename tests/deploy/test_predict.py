"""zoo predict on real files: an export of a trained model answers as eager PyTorch does on the
same decoded inputs, names its classes with the labels it carries, and refuses bad input in
one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo.bench.worker import source_of
from zoo.cli import cli
from zoo.data import load_dataset
from zoo.deploy.predict import InputError, Predictor
from zoo.errors import UsageError
from zoo.export.exporter import export_model
from zoo.export.manifest import read_manifest
from zoo.train import train


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet trained one epoch on digits, exported as a bundle (its preprocessing inside)."""
    root = tmp_path_factory.mktemp("digits")
    train("lenet", "digits", epochs=1, out=str(root / "run"), progress=False, tensorboard=False)
    out = root / "export"
    report = export_model("lenet", out, checkpoint=root / "run", formats=("onnx", "torchscript"))
    assert report.ok, report.manifest.failures()
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six real digits as 8-bit grey PNGs, of two sizes (the artifact resizes)."""
    root = tmp_path_factory.mktemp("images")
    splits = load_dataset("digits", zoo.get_spec("lenet").input)
    paths = []
    for i in range(6):
        x, y = splits.test[i]
        pixels = (x.squeeze(0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, mode="L")
        if i % 2:
            image = image.resize((40, 40))
        paths.append(root / f"{i}_{int(y)}.png")
        image.save(paths[-1])
    return paths


def _eager_top(export: Path, pixels: list[np.ndarray], k: int) -> list[list[tuple[int, float]]]:
    """The exported bundle rebuilt in eager PyTorch from the export's weights, one input at
    a time: the top-k (index, probability) of each."""
    module = source_of(export, read_manifest(export)).module()
    tops = []
    with torch.no_grad():
        for x in pixels:
            probabilities = torch.softmax(module(torch.from_numpy(x)[None]), dim=-1)[0]
            scores, best = torch.topk(probabilities, k)
            tops.append(list(zip(best.tolist(), scores.tolist(), strict=True)))
    return tops


@pytest.mark.parametrize("runtime", ["onnxruntime", "torchscript", "eager"])
def test_predictions_equal_eagers_and_carry_the_labels(
    digits: Path, images: list[Path], runtime: str
) -> None:
    predictor = Predictor(digits, runtime)
    got = list(predictor.predict(images, topk=3, batch_size=4))
    predictor.close()
    pixels = [np.array(Image.open(p).convert("L"), dtype=np.uint8)[..., None] for p in images]
    want = _eager_top(digits, pixels, 3)
    assert [p.input for p in got] == [str(p) for p in images]  # in order, whatever the batches
    for prediction, expected in zip(got, want, strict=True):
        assert [c[1] for c in prediction.classes] == [i for i, _ in expected]
        assert [c[0] for c in prediction.classes] == [str(i) for i, _ in expected]  # "0".."9"
        np.testing.assert_allclose(
            [c[2] for c in prediction.classes], [s for _, s in expected], atol=1e-5
        )
    # One epoch of LeNet reads most of these digits right (the file names say the truth).
    right = sum(p.classes[0][0] == Path(p.input).stem.split("_")[1] for p in got)
    assert right >= 4


def test_the_cli_prints_a_table_json_and_csv(digits: Path, images: list[Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(digits), *map(str, images[:2]), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["runtime"] == "onnxruntime" and document["model"] == "lenet"
    assert [len(r["predictions"]) for r in document["results"]] == [5, 5]
    assert {"label", "index", "score"} == set(document["results"][0]["predictions"][0])
    result = runner.invoke(cli, ["predict", str(digits), str(images[0]), "--csv", "--topk", "2"])
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["input", "rank", "label", "index", "score"] and len(rows) == 3
    assert [r[1] for r in rows[1:]] == ["1", "2"] and rows[1][2] == rows[1][3]
    result = runner.invoke(cli, ["predict", str(digits), str(images[0])])
    assert result.exit_code == 0 and "RANK" in result.stdout.splitlines()[0]


def _bomb(path: Path) -> Path:
    """A PNG of a few KB that declares 9,000 x 8,000 pixels (72 MP)."""
    Image.new("1", (9000, 8000)).save(path)
    assert path.stat().st_size < 100_000
    return path


def _huge_bomb(path: Path) -> Path:
    """180 MP: past PIL's own bound (2 x 89 MP), where PIL refuses it while opening."""
    Image.new("1", (15000, 12000)).save(path)
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: (p.write_text("not an image"), p)[1], "not an image zoo can read"),
        (lambda p: (p.write_bytes(b""), p)[1], "an empty file, not an image"),
        (
            lambda p: (Image.new("RGB", (28, 28), (200, 10, 10)).save(p), p)[1],
            "a colour image (RGB), and lenet takes grey images",
        ),
        (_bomb, "9000x8000 pixels, over the 67,108,864 zoo decodes"),
        (_huge_bomb, "over the 67,108,864 pixels zoo decodes"),
        (
            lambda p: (Image.fromarray(np.full((28, 28), 60000, np.uint16)).save(p), p)[1],
            "16-bit or float pixels",
        ),
        (
            lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), p)[1],
            "not an image zoo can read",
        ),
    ],
    ids=["text", "empty", "colour", "bomb", "pil-bomb", "16-bit", "truncated"],
)
def test_bad_images_are_one_line_and_exit_1(
    digits: Path, tmp_path: Path, make: object, problem: str
) -> None:
    path = make(tmp_path / "input.png")  # type: ignore[operator]
    result = CliRunner().invoke(cli, ["predict", str(digits), str(path)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"zoo: error: {path}: ") and problem in lines[0]


def test_grey_saved_as_rgb_is_read_as_grey(
    digits: Path, images: list[Path], tmp_path: Path
) -> None:
    rgb = tmp_path / "rgb.png"
    Image.open(images[0]).convert("RGB").save(rgb)
    predictor = Predictor(digits)
    same = list(predictor.predict([images[0], rgb]))
    assert same[0].classes == same[1].classes


def test_a_raw_export_and_one_that_does_not_classify_are_refused(tmp_path: Path) -> None:
    export_model("lenet", tmp_path / "raw", raw=True, formats=("onnx",), seed=0)
    with pytest.raises(UsageError, match=r"a raw export .* without --raw to predict"):
        Predictor(tmp_path / "raw")
    export_model("vae", tmp_path / "vae", formats=("onnx",), seed=0)
    with pytest.raises(UsageError, match="does not classify"):
        Predictor(tmp_path / "vae")


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names")
    train("gru", "names", epochs=1, out=str(root / "run"), progress=False, tensorboard=False)
    out = root / "export"
    assert export_model("gru", out, checkpoint=root / "run", formats=("onnx",)).ok
    return out


def test_text_lines_are_read_through_the_exports_vocabulary(names: Path, tmp_path: Path) -> None:
    texts = tmp_path / "surnames.txt"
    texts.write_text("Nakamura\n\n  Schmidt \nRossi\nNovák\n", encoding="utf-8")
    predictor = Predictor(names)
    got = list(predictor.predict([texts], topk=2))
    assert [p.input for p in got] == [f"{texts}:{n}" for n in (1, 3, 4, 5)]  # blank lines skipped
    manifest = read_manifest(names)
    assert manifest.labels is not None and manifest.labels.vocabulary is not None
    index = {ch: i for i, ch in enumerate(manifest.labels.vocabulary)}
    module = source_of(names, manifest).module()
    with torch.no_grad():
        for prediction, text in zip(got, ["Nakamura", "Schmidt", "Rossi", "Novák"], strict=True):
            ids = torch.tensor([[index[ch] for ch in text]])
            probabilities = torch.softmax(module(ids), dim=-1)[0]
            assert prediction.classes[0][1] == int(probabilities.argmax())
            assert prediction.classes[0][0] == manifest.labels.classes[prediction.classes[0][1]]
            assert prediction.classes[0][2] == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_a_byte_order_mark_is_not_text_and_fixed_lengths_pad(names: Path, tmp_path: Path) -> None:
    from zoo.data.tokens import pad_ids

    marked = tmp_path / "bom.txt"
    marked.write_bytes("\ufeffRossi\r\nNovák\r\n".encode())  # as Notepad saves it
    plain = tmp_path / "plain.txt"
    plain.write_text("Rossi\nNovák\n", encoding="utf-8")
    predictor = Predictor(names)
    assert [p.classes for p in predictor.predict([marked])] == [
        p.classes for p in predictor.predict([plain])
    ]
    ids = [torch.tensor([5, 6, 7]), torch.tensor([8])]
    assert pad_ids(ids).tolist() == [[5, 6, 7], [8, 0, 0]]
    assert pad_ids(ids, 5).tolist() == [[5, 6, 7, 0, 0], [8, 0, 0, 0, 0]]


def test_text_outside_the_vocabulary_and_no_text_are_refused(names: Path, tmp_path: Path) -> None:
    alien = tmp_path / "alien.txt"
    alien.write_text("Smith\n王小明\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"alien\.txt:2: '[王小明]+' outside the model's vocabulary"
    ):
        list(Predictor(names).predict([alien]))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["predict", str(names), str(blank)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"zoo: error: {blank}: no text in it (one input per line)"
