"""Recurrent sequence classifiers: the notes' name classifier (001 'RNN / Embedding / LSTM')."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from zoo.capabilities import recorded
from zoo.errors import InvalidArgumentsError
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, logits
from zoo.registry import InputSpec, ModelSpec

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RNNClassifier(nn.Module):
    """Embedding - LSTM/GRU/RNN - Linear on the last valid time step of each sequence.

    Sequences are padded on the right with ``padding_idx``; their lengths come from
    ``lengths`` or, when omitted, from the non-padding tokens. Reading the output at
    ``lengths - 1`` gives the same result as packing, and keeps batch and sequence length
    dynamic in exported graphs (packed sequences do not export).

    ``bidirectional=True`` adds a second recurrent stack that reads each sequence reversed
    *within its length*, so padding never enters the backward direction. With
    ``num_layers > 1`` the two directions are stacked independently (unlike
    ``nn.LSTM(bidirectional=True)``, which mixes them between layers).
    """

    def __init__(
        self,
        vocab_size: int = 128,
        num_classes: int = 18,
        embed_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        check_positive(
            vocab_size=vocab_size,
            num_classes=num_classes,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
        )
        if cell not in CELLS:
            raise InvalidArgumentsError(f"cell={cell!r} is not one of {', '.join(CELLS)}")
        if not 0 <= padding_idx < vocab_size:
            raise InvalidArgumentsError(f"padding_idx={padding_idx} is outside the vocabulary")
        rnn_type = CELLS[cell]
        inner_dropout = dropout if num_layers > 1 else 0.0
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.rnn = rnn_type(
            embed_dim, hidden_size, num_layers, batch_first=True, dropout=inner_dropout
        )
        self.rnn_reverse = None
        if bidirectional:
            self.rnn_reverse = rnn_type(
                embed_dim, hidden_size, num_layers, batch_first=True, dropout=inner_dropout
            )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            lengths = (tokens != self.padding_idx).sum(dim=1)
        # An all-padding row reads step 0 instead of indexing out of range.
        last = (lengths.to(torch.int64).clamp(min=1) - 1).view(-1, 1)
        embedded = self.embedding(tokens)
        out = self.rnn(embedded)[0]
        index = last.unsqueeze(2).expand(-1, 1, out.size(2))
        features = out.gather(1, index).squeeze(1)
        if self.rnn_reverse is not None:
            steps = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
            reverse = torch.where(steps <= last, last - steps, steps)
            flipped = embedded.gather(1, reverse.unsqueeze(2).expand(-1, -1, embedded.size(2)))
            back = self.rnn_reverse(flipped)[0]
            features = torch.cat([features, back.gather(1, index).squeeze(1)], dim=1)
        return self.fc(self.dropout(features))


def gru(
    vocab_size: int = 128,
    num_classes: int = 18,
    embed_dim: int = 64,
    hidden_size: int = 128,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    padding_idx: int = 0,
) -> RNNClassifier:
    return RNNClassifier(
        vocab_size,
        num_classes,
        embed_dim,
        hidden_size,
        num_layers,
        "gru",
        bidirectional,
        dropout,
        padding_idx,
    )


def _spec(name: str, builder: Callable[..., nn.Module], cell: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        capabilities=recorded(name),
        builder=builder,
        task="sequence_classification",
        # Token ids; 0 is padding. Axis 1 (time) is dynamic as well as the batch.
        input=InputSpec(
            (16,),
            dtype="int64",
            value_range=(1, 127),
            dynamic_axes={0: "batch", 1: "time"},
            name="tokens",
        ),
        outputs=logits(18),
        num_classes=18,
        summary=f"Embedding + {cell.upper()} sequence classifier (names -> language)",
        tags=("sequence", "text", "rnn", cell),
        source="notes 001 'RNN / Embedding / LSTM / RNN_H'; PyTorch names tutorial",
    )


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(_spec("lstm", RNNClassifier, "lstm"))
    registry.register(_spec("gru", gru, "gru"))
