"""names: surnames -> language, as character ids for the sequence classifiers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import zoo
from zoo.data import load_dataset
from zoo.data.names import read_names
from zoo.data.tokens import PAD, UNK, TokenDataset, build_vocabulary, clean_texts, pad_collate
from zoo.datasets import DataSplits, labels_of
from zoo.registry import InputSpec


@pytest.fixture(scope="module")
def names() -> DataSplits:
    return load_dataset("names", zoo.get_spec("lstm").input)


def token_sets(splits: DataSplits) -> list[TokenDataset]:
    parts = [splits.train, splits.val, splits.test]
    assert all(isinstance(p, TokenDataset) for p in parts)
    return parts  # type: ignore[return-value]


def test_names_has_at_least_eight_latin_script_languages(names: DataSplits) -> None:
    info = names.info
    assert info.kind == "tokens"
    assert info.num_classes >= 8 and len(info.class_names) == info.num_classes
    assert {"English", "German", "French", "Italian", "Spanish", "Polish"} <= set(info.class_names)
    assert list(info.class_names) == sorted(info.class_names)
    for split in token_sets(names):
        assert set(labels_of(split).tolist()) == set(range(info.num_classes))


def test_no_name_is_in_two_languages_or_two_splits(names: DataSplits) -> None:
    by_language = read_names()
    owners: dict[str, str] = {}
    for language, surnames in by_language.items():
        assert len(surnames) >= 40
        for name in surnames:
            assert owners.setdefault(name, language) == language
    seen = [t for split in token_sets(names) for t in split.texts]
    assert len(seen) == len(set(seen)) == len(owners)
    for split in token_sets(names):
        for text, label in zip(split.texts, labels_of(split).tolist(), strict=True):
            assert owners[text] == names.info.class_names[label]


def test_items_are_character_ids_from_the_train_vocabulary(names: DataSplits) -> None:
    info = names.info
    assert info.vocabulary is not None and info.vocab_size == len(info.vocabulary)
    assert info.vocabulary[:2] == ("<pad>", "<unk>")
    assert list(info.vocabulary[2:]) == sorted(info.vocabulary[2:])
    train, val, test = token_sets(names)
    assert set(info.vocabulary[2:]) == {ch for t in train.texts for ch in t}
    longest = 0
    for split in (train, val, test):
        for i in range(len(split)):
            ids, label = split[i]
            assert ids.dtype == torch.int64 and label.dtype == torch.int64 and label.shape == ()
            assert int(ids.min()) >= 1 and int(ids.max()) < info.vocab_size
            longest = max(longest, len(ids))
    assert longest == info.max_length
    ids, _ = train[0]
    assert "".join(info.vocabulary[i] for i in ids.tolist()) == train.texts[0]
    assert UNK not in torch.cat(train.sequences).tolist()  # only unseen characters are unknown


def test_splits_are_stratified_and_seeded(names: DataSplits) -> None:
    train, _, test = token_sets(names)
    counts = [
        torch.bincount(labels_of(s), minlength=names.info.num_classes) for s in token_sets(names)
    ]
    total = sum(counts)
    assert torch.all((counts[2] - total * 0.1).abs() <= 1)
    assert torch.all((counts[1] - total * 0.1).abs() <= 1)
    again = load_dataset("names", zoo.get_spec("lstm").input)
    assert again.train.texts == train.texts  # type: ignore[attr-defined]
    other = load_dataset("names", zoo.get_spec("lstm").input, seed=5)
    assert other.test.texts != test.texts  # type: ignore[attr-defined]
    # The majority class stays a small share: the task is not trivial.
    assert counts[2].max().item() / counts[2].sum().item() < 0.2


def test_collate_pads_with_zero_on_the_right(names: DataSplits) -> None:
    assert names.collate_fn is not None
    batch = [names.train[i] for i in range(8)]
    tokens, labels = names.collate_fn(batch)
    lengths = [len(ids) for ids, _ in batch]
    assert tokens.shape == (8, max(lengths)) and tokens.dtype == torch.int64
    assert labels.shape == (8,) and labels.dtype == torch.int64
    assert ((tokens != PAD).sum(1)).tolist() == lengths  # lengths are the non-padding counts
    for row, (ids, label) in enumerate(batch):
        assert torch.equal(tokens[row, : len(ids)], ids)
        assert labels[row] == label


def test_names_feed_the_lstm_through_a_dataloader(names: DataSplits) -> None:
    info = names.info
    assert info.vocab_size is not None
    model = zoo.create_model("lstm", vocab_size=info.vocab_size, num_classes=info.num_classes)
    loader = DataLoader(names.val, batch_size=32, collate_fn=names.collate_fn)
    tokens, labels = next(iter(loader))
    assert model(tokens).shape == (32, info.num_classes)
    assert labels.max() < info.num_classes


def test_fixed_length_models_get_batches_of_exactly_that_length() -> None:
    spec = InputSpec((48,), dtype="int64", value_range=(1, 127), dynamic_axes={0: "batch"})
    splits = load_dataset("names", spec)
    assert splits.collate_fn is not None
    tokens, _ = splits.collate_fn([splits.train[0], splits.train[1]])
    assert tokens.shape == (2, 48)


def test_token_helpers() -> None:
    cleaned = clean_texts({"b": [" Ann ", "Bo", "Ann", ""], "a": ["Bo", "Cy"], "c": ["Bo"]})
    assert cleaned == {"a": ["Cy"], "b": ["Ann"]}  # "Bo" is ambiguous, "c" left empty
    assert build_vocabulary(["ba", "ab"]) == ("<pad>", "<unk>", "a", "b")
    assert pad_collate([])[0].shape == (0, 0)
