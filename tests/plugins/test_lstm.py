from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import zoo
from zoo.plugins.lstm import CELLS


def _pad(seqs: list[list[int]]) -> torch.Tensor:
    width = max(map(len, seqs))
    return torch.tensor([s + [0] * (width - len(s)) for s in seqs])


SEQS = [[5, 9, 3], [7, 2, 8, 4, 6, 1], [11]]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(
    "bidirectional,stacking",
    [(False, "independent"), (True, "independent"), (True, "pytorch")],
)
def test_padding_does_not_change_a_sequences_logits(
    cell: str, bidirectional: bool, stacking: str
) -> None:
    model = zoo.create_model(
        "lstm", cell=cell, bidirectional=bidirectional, num_layers=2, stacking=stacking
    ).eval()
    padded = _pad(SEQS)
    longer = torch.cat([padded, torch.zeros(len(SEQS), 9, dtype=torch.long)], dim=1)
    with torch.no_grad():
        batched = model(padded)
        alone = torch.cat([model(torch.tensor([s])) for s in SEQS])
        explicit = model(padded, torch.tensor([len(s) for s in SEQS]))
        more_padding = model(longer)
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(batched, explicit)
    torch.testing.assert_close(more_padding, batched, atol=1e-6, rtol=1e-5)


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


#: The notes' name classifier: 128 ASCII codes, embedding and hidden size 100, a 2-layer
#: bidirectional GRU in PyTorch's stacking, a Linear(200, 18) on both final states.
NOTES = dict(
    vocab_size=128,
    num_classes=18,
    embed_dim=100,
    hidden_size=100,
    num_layers=2,
    bidirectional=True,
    stacking="pytorch",
)


def test_the_notes_classifier_has_the_notes_parameter_count() -> None:
    notes = zoo.create_model("gru", **NOTES)
    assert sum(p.numel() for p in notes.parameters()) == 318_818
    independent = zoo.create_model("gru", **{**NOTES, "stacking": "independent"})
    assert sum(p.numel() for p in independent.parameters()) == 258_818


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_pytorch_stacking_is_torchs_bidirectional_module(cell: str) -> None:
    """Weights of a plain ``nn.GRU(bidirectional=True, num_layers=2)`` load as they are, and
    full-length sequences (no padding) give what that module gives: the head reads its
    final forward and backward states of the last layer."""
    torch.manual_seed(0)
    kwargs = dict(NOTES, cell=cell, embed_dim=12, hidden_size=10, num_layers=3)
    model = zoo.create_model("lstm", **kwargs).eval()
    reference = CELLS[cell](12, 10, 3, batch_first=True, bidirectional=True).eval()
    model.rnn.load_state_dict(reference.state_dict())  # strict: same names and shapes
    tokens = torch.randint(1, 128, (4, 9))
    with torch.no_grad():
        embedded = model.embedding(tokens)
        output, hidden = reference(embedded)
        torch.testing.assert_close(model.rnn(embedded, torch.full((4,), 9)), output)
        h_n = hidden[0] if cell == "lstm" else hidden  # [layers * 2, B, H]
        expected = model.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))
        torch.testing.assert_close(model(tokens), expected, atol=1e-6, rtol=1e-5)


def test_pytorch_stacking_mixes_the_directions_between_layers() -> None:
    """Layer 2 reads both directions of layer 1: its input is 2 * hidden_size wide."""
    model = zoo.create_model("gru", **NOTES)
    assert model.rnn.weight_ih_l1.shape == (300, 200)
    assert model.rnn_reverse is None
    independent = zoo.create_model("gru", **{**NOTES, "stacking": "independent"})
    assert independent.rnn.weight_ih_l1.shape == (300, 100)


def test_pytorch_stacking_drops_out_between_layers_only_in_training() -> None:
    model = zoo.create_model("gru", **NOTES, dropout=0.5)
    model.dropout.p = 0.0  # the head's: what changes now is the dropout between layers
    tokens = _pad(SEQS)
    torch.manual_seed(0)
    first = model(tokens)
    torch.manual_seed(1)
    assert not torch.allclose(first, model(tokens))
    model.eval()
    torch.testing.assert_close(model(tokens), model(tokens), atol=0, rtol=0)


@pytest.mark.parametrize("kwargs", [dict(num_layers=2), dict(bidirectional=True)])
def test_one_direction_or_one_layer_is_the_same_model_either_way(kwargs: dict) -> None:
    independent = zoo.create_model("gru", **kwargs).eval()
    stacked = zoo.create_model("gru", stacking="pytorch", **kwargs).eval()
    # rnn_reverse.weight_ih_l0 of independent stacks is rnn.weight_ih_l0_reverse of PyTorch's.
    renamed = {
        f"rnn.{k.partition('.')[2]}_reverse" if k.startswith("rnn_reverse.") else k: v
        for k, v in independent.state_dict().items()
    }
    stacked.load_state_dict(renamed)  # strict: the same tensors under the renamed keys
    with torch.no_grad():
        torch.testing.assert_close(stacked(_pad(SEQS)), independent(_pad(SEQS)))


def test_unknown_stacking_is_refused() -> None:
    with pytest.raises(
        zoo.InvalidArgumentsError,
        match="stacking='torch' is not one of independent, pytorch",
    ):
        zoo.create_model("gru", bidirectional=True, stacking="torch")


def test_unknown_cell_is_refused() -> None:
    with pytest.raises(
        zoo.InvalidArgumentsError, match="cell='transformer' is not one of lstm, gru, rnn"
    ):
        zoo.create_model("lstm", cell="transformer")
