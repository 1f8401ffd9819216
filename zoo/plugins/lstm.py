"""Recurrent sequence classifiers (LSTM, GRU): the character-level name classifier of
PyTorch's "Classifying Names with a Character-Level RNN" tutorial, with an embedding."""

from collections.abc import Callable
from typing import Final

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from zoo.capabilities import recorded
from zoo.errors import InvalidArgumentsError
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, logits
from zoo.registry import InputSpec, ModelSpec

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
#: How a bidirectional model stacks layers: ``independent``, two stacks of ``num_layers``
#: (one per direction, joined only by the head); ``pytorch``, ``nn.GRU(bidirectional=True)``'s
#: own stacking, where each layer reads both directions of the layer below.
STACKINGS = ("independent", "pytorch")


class _ReadsWithinLength:
    """``forward(input, lengths)`` for a bidirectional, batch-first ``nn.LSTM/GRU/RNN``.

    The output is what the module itself gives for each sequence alone: PyTorch's stacking
    (the parameters, their names and shapes are the module's own), but run layer by layer,
    with the reverse direction of every layer reading that layer's input reversed *within
    each sequence's length*, so padding never reaches a valid step. Packing does the same
    but does not export; this keeps batch and length dynamic. Steps at or past a sequence's
    length hold unspecified values. Built with biases (the default) and, for the LSTM, no
    projection: the layout of ``_flat_weights`` that :meth:`forward` reads.
    """

    # Set by nn.RNNBase.__init__. The subclasses narrow two things mypy checks (hence their
    # ignores): forward takes lengths (the module's takes hx), and _flat_weights are all
    # tensors (bias on, no LSTM projection).
    num_layers: int
    hidden_size: int
    dropout: float
    training: bool
    _flat_weights: list[Tensor]
    _update_flat_weights: Callable[[], None]

    def _direction(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        """One direction of one layer over ``x`` [B, T, F], from a zero state: [B, T, H]."""
        raise NotImplementedError

    def _zeros(self, x: Tensor) -> Tensor:
        return torch.zeros(1, x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)

    def forward(self, input: Tensor, lengths: Tensor) -> Tensor:
        """``input`` [B, T, F] padded on the right, ``lengths`` [B] (>= 1): [B, T, 2H]."""
        self._update_flat_weights()  # as nn.RNNBase.forward does (functional_call, export)
        last = (lengths.to(torch.int64).clamp(min=1) - 1).view(-1, 1)
        steps = torch.arange(input.size(1), device=input.device).unsqueeze(0)
        # Step t of a sequence read backwards within its length; padding steps stay put.
        # Applying it twice gives the identity, so it also puts reversed outputs back.
        reverse = torch.where(steps <= last, last - steps, steps).unsqueeze(2)
        x = input
        # _flat_weights: for each layer, for each direction, w_ih, w_hh, b_ih, b_hh.
        for layer in range(self.num_layers):
            if layer > 0 and self.training and self.dropout > 0:
                x = F.dropout(x, self.dropout, True)  # between layers, as the module does
            first = 8 * layer
            forward = self._direction(x, self._flat_weights[first : first + 4])
            flipped = x.gather(1, reverse.expand(-1, -1, x.size(2)))
            backward = self._direction(flipped, self._flat_weights[first + 4 : first + 8])
            backward = backward.gather(1, reverse.expand(-1, -1, backward.size(2)))
            x = torch.cat([forward, backward], dim=2)
        return x


class BiLSTM(_ReadsWithinLength, nn.LSTM):  # type: ignore[misc]
    """``nn.LSTM(bidirectional=True, batch_first=True)`` that reads within lengths."""

    def _direction(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        h0 = self._zeros(x)
        return torch.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, True)[0]


class BiGRU(_ReadsWithinLength, nn.GRU):  # type: ignore[misc]
    """``nn.GRU(bidirectional=True, batch_first=True)`` that reads within lengths."""

    def _direction(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        return torch.gru(x, self._zeros(x), weights, True, 1, 0.0, self.training, False, True)[0]


class BiRNN(_ReadsWithinLength, nn.RNN):  # type: ignore[misc]
    """``nn.RNN(bidirectional=True, batch_first=True)`` (tanh) that reads within lengths."""

    def _direction(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        h0 = self._zeros(x)
        return torch.rnn_tanh(x, h0, weights, True, 1, 0.0, self.training, False, True)[0]


#: cell -> the bidirectional module of ``stacking="pytorch"``.
BIDIRECTIONAL = {"lstm": BiLSTM, "gru": BiGRU, "rnn": BiRNN}


class RNNClassifier(nn.Module):
    """Embedding - LSTM/GRU/RNN - Linear on the last valid time step of each sequence.

    Sequences are padded on the right with ``padding_idx``; their lengths come from
    ``lengths`` or, when omitted, from the non-padding tokens. Reading the output at
    ``lengths - 1`` gives the same result as packing, and keeps batch and sequence length
    dynamic in exported graphs (packed sequences do not export).

    ``bidirectional=True`` adds a backward direction that reads each sequence reversed
    *within its length*, so padding never enters it; the head reads the forward direction at
    the last valid step and the backward one at the first. ``stacking`` says how directions
    stack when ``num_layers > 1`` (with one layer, or one direction, both are the same
    model):

    - ``"independent"`` (default, as zoo 0.1): a second ``num_layers`` stack
      (``rnn_reverse``) for the backward direction; the directions meet only in the head.
    - ``"pytorch"``: ``nn.GRU(bidirectional=True)``'s stacking, each layer reading both
      directions of the layer below. ``rnn`` is that module (:class:`BiGRU` and friends:
      same parameters, names and shapes), run layer by layer so padding stays out.
    """

    #: ``stacking="pytorch"`` on a bidirectional model; a constant, so TorchScript compiles
    #: only the branch of ``forward`` that this model runs.
    stacked: Final[bool]

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
        stacking: str = "independent",
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
        if stacking not in STACKINGS:
            raise InvalidArgumentsError(
                f"stacking={stacking!r} is not one of {', '.join(STACKINGS)}"
            )
        if not 0 <= padding_idx < vocab_size:
            raise InvalidArgumentsError(f"padding_idx={padding_idx} is outside the vocabulary")
        rnn_type = CELLS[cell]
        inner_dropout = dropout if num_layers > 1 else 0.0
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.stacked = bidirectional and stacking == "pytorch"
        if self.stacked:
            self.rnn: nn.RNNBase = BIDIRECTIONAL[cell](
                embed_dim,
                hidden_size,
                num_layers,
                batch_first=True,
                dropout=inner_dropout,
                bidirectional=True,
            )
        else:
            self.rnn = rnn_type(
                embed_dim, hidden_size, num_layers, batch_first=True, dropout=inner_dropout
            )
        self.rnn_reverse = None
        if bidirectional and not self.stacked:
            self.rnn_reverse = rnn_type(
                embed_dim, hidden_size, num_layers, batch_first=True, dropout=inner_dropout
            )
        self.hidden_size = hidden_size
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            lengths = (tokens != self.padding_idx).sum(dim=1)
        # An all-padding row reads step 0 instead of indexing out of range.
        last = (lengths.to(torch.int64).clamp(min=1) - 1).view(-1, 1)
        embedded = self.embedding(tokens)
        if self.stacked:
            out = self.rnn(embedded, lengths)
            index = last.unsqueeze(2).expand(-1, 1, self.hidden_size)
            forward = out[:, :, : self.hidden_size].gather(1, index).squeeze(1)
            # The backward direction has read the whole sequence at step 0.
            features = torch.cat([forward, out[:, 0, self.hidden_size :]], dim=1)
            return self.fc(self.dropout(features))
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
    stacking: str = "independent",
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
        stacking,
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
        source="PyTorch's NLP From Scratch: Classifying Names with a Character-Level RNN",
    )


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(_spec("lstm", RNNClassifier, "lstm"))
    registry.register(_spec("gru", gru, "gru"))
