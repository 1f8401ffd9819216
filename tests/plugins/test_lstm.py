from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import zoo


def _pad(seqs: list[list[int]]) -> torch.Tensor:
    width = max(map(len, seqs))
    return torch.tensor([s + [0] * (width - len(s)) for s in seqs])


SEQS = [[5, 9, 3], [7, 2, 8, 4, 6, 1], [11]]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_a_sequences_logits(cell: str, bidirectional: bool) -> None:
    model = zoo.create_model("lstm", cell=cell, bidirectional=bidirectional, num_layers=2).eval()
    with torch.no_grad():
        batched = model(_pad(SEQS))
        alone = torch.cat([model(torch.tensor([s])) for s in SEQS])
        explicit = model(_pad(SEQS), torch.tensor([len(s) for s in SEQS]))
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(batched, explicit)


def test_last_valid_step_equals_packing() -> None:
    model = zoo.create_model("lstm").eval()
    tokens = _pad(SEQS)
    lengths = torch.tensor([len(s) for s in SEQS])
    with torch.no_grad():
        packed = pack_padded_sequence(
            model.embedding(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = model.rnn(packed)
        expected = model.fc(h_n[-1])
        torch.testing.assert_close(model(tokens), expected, atol=1e-6, rtol=1e-5)


def test_bidirectional_backward_direction_reads_reversed_sequences() -> None:
    model = zoo.create_model("lstm", bidirectional=True).eval()
    assert model.fc.in_features == 2 * 128
    with torch.no_grad():
        seq = torch.tensor([[4, 8, 15, 16]])
        emb = model.embedding(seq.flip(1))
        back = model.rnn_reverse(emb)[0][:, -1]
        forward = model.rnn(model.embedding(seq))[0][:, -1]
        torch.testing.assert_close(model(seq), model.fc(torch.cat([forward, back], 1)))


def test_gru_name_is_the_notes_gru_classifier() -> None:
    model = zoo.create_model("gru")
    assert isinstance(model.rnn, torch.nn.GRU)


def test_unknown_cell_is_refused() -> None:
    with pytest.raises(
        zoo.InvalidArgumentsError, match="cell='transformer' is not one of lstm, gru, rnn"
    ):
        zoo.create_model("lstm", cell="transformer")
