"""Short texts (names) as character-id sequences for sequence classifiers.

Id 0 pads, id 1 stands for a character never seen in training; the vocabulary is the sorted
characters of the *train* split, so validation and test measure what an unseen name meets.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.data.splits import stratified_split
from zoo.datasets import TOKENS, DatasetInfo, DataSplits, LoadRequest
from zoo.errors import DataError

__all__ = [
    "PAD",
    "SPECIALS",
    "UNK",
    "TokenDataset",
    "build_vocabulary",
    "clean_texts",
    "encode",
    "pad_collate",
    "pad_ids",
    "text_splits",
]

PAD: Final = 0
UNK: Final = 1
SPECIALS: Final = ("<pad>", "<unk>")


def clean_texts(by_class: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Strip, NFC-normalise and de-duplicate texts per class; drop texts found in more than one
    class (no model can get them right) and classes left empty. Sorted, so deterministic."""
    cleaned = {
        cls: {unicodedata.normalize("NFC", t).strip() for t in texts} - {""}
        for cls, texts in by_class.items()
    }
    seen: dict[str, int] = {}
    for texts in cleaned.values():
        for text in texts:
            seen[text] = seen.get(text, 0) + 1
    result = {}
    for cls in sorted(cleaned):
        kept = sorted(t for t in cleaned[cls] if seen[t] == 1)
        if kept:
            result[cls] = kept
    return result


def build_vocabulary(texts: Iterable[str]) -> tuple[str, ...]:
    """``("<pad>", "<unk>", *sorted characters of texts)``: id -> character."""
    return SPECIALS + tuple(sorted({ch for text in texts for ch in text}))


def encode(text: str, index: Mapping[str, int]) -> Tensor:
    """Character ids of ``text`` (unknown characters -> ``UNK``), int64 ``[len(text)]``."""
    return torch.tensor([index.get(ch, UNK) for ch in text], dtype=torch.int64)


class TokenDataset(Dataset[tuple[Tensor, Tensor]]):
    """Items ``(LongTensor[T] of ids >= 1, int64 label)``; ``texts`` keeps the originals."""

    #: Held in memory: the trainer fetches items itself, no DataLoader workers.
    in_memory = True

    def __init__(self, texts: Sequence[str], labels: Tensor, index: Mapping[str, int]) -> None:
        self.texts = tuple(texts)
        #: int64 ``[len(self)]``: the class of each item.
        self.labels = labels
        self.sequences = [encode(text, index) for text in self.texts]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.sequences[index], self.labels[index]


def pad_ids(sequences: Sequence[Tensor], length: int | None = None) -> Tensor:
    """Id sequences as ``LongTensor[B, T]``, padded on the right with ``PAD`` to the longest
    (or to ``length``): the sequence models read each up to its non-padding count."""
    longest = max((len(ids) for ids in sequences), default=0)
    width = longest if length is None else length
    if longest > width:
        raise DataError(f"a sequence of {longest} tokens does not fit the fixed length {width}")
    tokens = torch.full((len(sequences), width), PAD, dtype=torch.int64)
    for row, ids in enumerate(sequences):
        tokens[row, : len(ids)] = ids
    return tokens


def pad_collate(
    batch: Sequence[tuple[Tensor, Tensor]], length: int | None = None
) -> tuple[Tensor, Tensor]:
    """Stack ``(ids, label)`` items into ``(LongTensor[B, T], LongTensor[B])``, padding on the
    right with 0 to the longest item (or to ``length``). Lengths are the non-zero counts."""
    tokens = pad_ids([ids for ids, _ in batch], length)
    labels = torch.stack([label for _, label in batch]) if batch else torch.empty(0)
    return tokens, labels.to(torch.int64)


def text_splits(
    by_class: Mapping[str, Iterable[str]],
    request: LoadRequest,
    *,
    description: str,
    source: str,
) -> DataSplits:
    """Seeded stratified splits of texts by class, tokenised with the train vocabulary.

    Raises DataError when no text is left after cleaning (see :func:`clean_texts`), and
    DataMismatchError (through ``request.check``) before encoding anything.
    """
    texts_by_class = clean_texts(by_class)
    if not texts_by_class:
        raise DataError(f"dataset {request.name!r}: no texts left after cleaning ({source})")
    class_names = tuple(texts_by_class)
    texts = [t for cls in class_names for t in texts_by_class[cls]]
    labels = torch.tensor(
        [i for i, cls in enumerate(class_names) for _ in texts_by_class[cls]], dtype=torch.int64
    )
    parts = stratified_split(labels, (request.val_fraction, request.test_fraction), request.seed)
    train_texts = [texts[i] for i in parts[0].tolist()]
    vocabulary = build_vocabulary(train_texts)
    info = DatasetInfo(
        name=request.name,
        kind=TOKENS,
        num_classes=len(class_names),
        class_names=class_names,
        description=description,
        source=source,
        vocab_size=len(vocabulary),
        vocabulary=vocabulary,
        max_length=max(len(t) for t in texts),
    )
    request.check(info)
    index = {ch: i for i, ch in enumerate(vocabulary)}
    train, val, test = (
        TokenDataset([texts[i] for i in idx.tolist()], labels[idx], index) for idx in parts
    )
    collate: Any = pad_collate
    if 1 not in request.input.dynamic_axes:
        # The model's time axis is fixed: pad every batch to exactly its length.
        collate = functools.partial(pad_collate, length=request.input.shape[0])
    return DataSplits(train=train, val=val, test=test, info=info, collate_fn=collate)
