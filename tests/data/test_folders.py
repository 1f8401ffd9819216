"""imagefolder:PATH and textfolder:PATH on tiny folders written by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.conftest import MakeImages
from zoo.data import load_dataset
from zoo.datasets import labels_of
from zoo.errors import DataError, DataMismatchError
from zoo.registry import InputSpec

RAW_RGB = InputSpec((3, 12, 12))


def test_single_folder_is_split_seeded_and_stratified(
    tmp_path: Path, make_images: MakeImages
) -> None:
    make_images(tmp_path, ("ants", "bees"), count=10)
    splits = load_dataset(f"imagefolder:{tmp_path}", RAW_RGB)
    info = splits.info
    assert (info.kind, info.class_names, info.channels) == ("image", ("ants", "bees"), 3)
    assert info.image_size == (14, 12)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [16, 2, 2]
    for split in (splits.train, splits.val, splits.test):
        assert torch.bincount(labels_of(split)).tolist() == [len(split) // 2] * 2
    x, y = splits.train[0]
    assert x.shape == (3, 12, 12) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert splits.collate_fn is None
    other = load_dataset(f"imagefolder:{tmp_path}", RAW_RGB, seed=1)
    assert other.test.indices != splits.test.indices  # type: ignore[attr-defined]


def test_pixels_are_shaped_and_labels_match_the_folders(
    tmp_path: Path, make_images: MakeImages, vae_input: InputSpec
) -> None:
    make_images(tmp_path, ("dark", "light"), count=4, mode="L")
    splits = load_dataset(f"imagefolder:{tmp_path}", vae_input, val_fraction=0, test_fraction=0)
    assert splits.info.channels == 1
    batch, labels = next(iter(DataLoader(splits.train, batch_size=8)))
    assert batch.shape == (8, 3, 32, 32)
    assert batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(batch[:, 0], batch[:, 2])  # grey repeated into 3 channels
    # Each image is one flat grey level 40 * label + i, normalised by 0.5 / 0.5.
    levels = (batch[:, 0, 0, 0] * 0.5 + 0.5) * 255
    expected = torch.tensor([40 * int(y) + i % 4 for i, y in enumerate(labels)], dtype=torch.float)
    assert torch.allclose(levels, expected, atol=0.6)


def test_train_and_val_folders_are_used_and_test_is_cut_from_train(
    tmp_path: Path, make_images: MakeImages
) -> None:
    make_images(tmp_path / "train", ("ants", "bees", "wasps"), count=10)
    make_images(tmp_path / "val", ("bees", "ants"), count=3)
    splits = load_dataset(f"imagefolder:{tmp_path}", RAW_RGB)
    assert splits.info.class_names == ("ants", "bees", "wasps")
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [27, 6, 3]
    assert sorted(labels_of(splits.val).tolist()) == [0, 0, 0, 1, 1, 1]
    labels = [int(splits.val[i][1]) for i in range(len(splits.val))]
    assert labels == labels_of(splits.val).tolist()


def test_train_val_and_test_folders(tmp_path: Path, make_images: MakeImages) -> None:
    for part, count in (("train", 6), ("val", 2), ("test", 3)):
        make_images(tmp_path / part, ("a", "b"), count=count)
    splits = load_dataset(f"imagefolder:{tmp_path}", RAW_RGB)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [12, 4, 6]


def test_val_classes_unknown_to_train_are_an_error(tmp_path: Path, make_images: MakeImages) -> None:
    make_images(tmp_path / "train", ("a", "b"), count=3)
    make_images(tmp_path / "val", ("a", "zebra"), count=1)
    with pytest.raises(DataError, match="zebra"):
        load_dataset(f"imagefolder:{tmp_path}", RAW_RGB)


def test_colour_folder_for_lenet_is_a_mismatch(
    tmp_path: Path, make_images: MakeImages, lenet_input: InputSpec
) -> None:
    make_images(tmp_path, ("cats", "dogs"), count=2, mode="RGB")
    with pytest.raises(DataMismatchError, match="in_channels=3"):
        load_dataset(f"imagefolder:{tmp_path}", lenet_input)


def test_grey_folder_for_lenet_works(
    tmp_path: Path, make_images: MakeImages, lenet_input: InputSpec
) -> None:
    make_images(tmp_path, ("cats", "dogs"), count=3, mode="L")
    x, _ = load_dataset(f"imagefolder:{tmp_path}", lenet_input).train[0]
    assert x.shape == (1, 28, 28)


@pytest.mark.parametrize("setup", ["missing", "file", "empty", "no_images"])
def test_bad_image_folders_name_the_path_and_the_layout(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "data"
    if setup == "file":
        path.write_text("x")
    elif setup == "empty":
        path.mkdir()
    elif setup == "no_images":
        (path / "cats").mkdir(parents=True)
        (path / "cats" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as caught:
        load_dataset(f"imagefolder:{path}", RAW_RGB)
    assert str(path) in str(caught.value)
    assert "PATH/<class>/<image>" in str(caught.value)


def write_names(root: Path, names: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for language, text in names.items():
        (root / f"{language}.txt").write_text(text, encoding="utf-8")
    return root


def test_textfolder_reads_one_file_per_class(tmp_path: Path, lstm_input: InputSpec) -> None:
    root = write_names(
        tmp_path / "names",
        {
            "German": "Müller\nSchmidt\nSchneider\nFischer\nWeber\nMeyer\nWagner\nBecker\n",
            "Italian": "Rossi\nRusso\nFerrari\nEsposito\nBianchi\nRomano\nColombo\nRicci\n\n",
            "Japanese": "Sato\nSuzuki\nTakahashi\nTanaka\nWatanabe\nIto\nYamamoto\nNakamura\n",
        },
    )
    (root / "README.md").write_text("ignored: not a .txt file")
    splits = load_dataset(f"textfolder:{root}", lstm_input)
    info = splits.info
    assert info.class_names == ("German", "Italian", "Japanese")
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [18, 3, 3]
    assert info.max_length == len("Takahashi")
    assert info.vocabulary is not None and info.vocabulary[:2] == ("<pad>", "<unk>")
    assert splits.collate_fn is not None
    batch = [splits.test[i] for i in range(3)]
    tokens, labels = splits.collate_fn(batch)
    assert tokens.shape == (3, max(len(ids) for ids, _ in batch))
    assert (tokens != 0).sum(1).tolist() == [len(ids) for ids, _ in batch]
    assert labels.tolist() == [0, 1, 2]


def test_textfolder_drops_names_in_two_classes(tmp_path: Path, lstm_input: InputSpec) -> None:
    root = write_names(tmp_path, {"A": "x\ny\nshared\n", "B": "z\nw\nshared\nw\n"})
    splits = load_dataset(f"textfolder:{root}", lstm_input, val_fraction=0, test_fraction=0)
    assert sorted(splits.train.texts) == ["w", "x", "y", "z"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("setup", ["missing", "no_txt", "empty_files", "not_utf8"])
def test_bad_text_folders_are_data_errors(
    tmp_path: Path, setup: str, lstm_input: InputSpec
) -> None:
    path = tmp_path / "texts"
    if setup != "missing":
        path.mkdir()
    if setup == "no_txt":
        (path / "German.csv").write_text("Müller")
    elif setup == "empty_files":
        write_names(path, {"German": "\n  \n", "French": ""})
    elif setup == "not_utf8":
        (path / "German.txt").write_bytes("Müller".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        load_dataset(f"textfolder:{path}", lstm_input)
    assert str(path) in str(caught.value)


def test_textfolder_for_an_image_model_is_a_mismatch(
    tmp_path: Path, lenet_input: InputSpec
) -> None:
    with pytest.raises(DataMismatchError, match="--data mnist5k"):
        load_dataset(f"textfolder:{tmp_path}", lenet_input)
