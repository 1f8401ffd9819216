from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.card import count_flops, count_parameters, model_card


def test_parameters_count_shared_tensors_once_and_split_trainable() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, shared, nn.Linear(3, 1))
    model[2].weight.requires_grad_(False)
    assert count_parameters(model) == (12 + 4, 12 + 1)


def test_lenet_flops_match_the_hand_count() -> None:
    model = zoo.create_model("lenet").eval()
    macs = (
        28 * 28 * 6 * 1 * 25  # conv1, padded to 28x28 output
        + 10 * 10 * 16 * 6 * 25  # conv2 on 14x14 -> 10x10
        + 400 * 120
        + 120 * 84
        + 84 * 10
    )
    assert count_flops(model, torch.zeros(1, 1, 28, 28)) == 2 * macs


def test_resnet18_flops_match_torchvisions_published_gmacs() -> None:
    model = zoo.create_model("resnet18", num_classes=1000).eval()
    gmacs = count_flops(model, torch.zeros(1, 3, 224, 224)) / 2e9
    assert gmacs == pytest.approx(1.81, abs=0.01)  # torchvision's "GFLOPS" column is MACs


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_recurrent_flops_are_counted_analytically(cell: str, gates: int) -> None:
    model = zoo.create_model(
        "lstm", cell=cell, vocab_size=50, embed_dim=8, hidden_size=16, num_classes=5, num_layers=2
    ).eval()
    batch, steps = 3, 7
    rnn = 2 * gates * 16 * ((8 + 16) + (16 + 16)) * steps * batch
    head = 2 * 16 * 5 * batch
    assert count_flops(model, torch.ones(batch, steps, dtype=torch.long)) == rnn + head


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_pytorch_stacking_flops_read_both_directions_below(cell: str, gates: int) -> None:
    """Layer 2 of ``stacking="pytorch"`` takes 2 * hidden inputs per direction (the LSTM's
    fused kernel is invisible to the counter: it is added from the shapes)."""
    model = zoo.create_model(
        "lstm",
        cell=cell,
        vocab_size=50,
        embed_dim=8,
        hidden_size=16,
        num_classes=5,
        num_layers=2,
        bidirectional=True,
        stacking="pytorch",
    ).eval()
    batch, steps = 3, 7
    rnn = 2 * gates * 16 * ((8 + 16) + (32 + 16)) * steps * batch * 2
    head = 2 * 32 * 5 * batch
    assert count_flops(model, torch.ones(batch, steps, dtype=torch.long)) == rnn + head


def test_bidirectional_layers_double_the_recurrent_flops() -> None:
    uni = zoo.create_model("gru", hidden_size=16, embed_dim=8).eval()
    bi = zoo.create_model("gru", hidden_size=16, embed_dim=8, bidirectional=True).eval()
    x = torch.ones(2, 5, dtype=torch.long)
    head = 2 * 16 * 18 * 2
    assert count_flops(bi, x) - 2 * head == 2 * (count_flops(uni, x) - head)


def test_card_measures_the_built_model() -> None:
    card = model_card(zoo.get_spec("resnet18"), num_classes=1000)
    assert card["measured"]["parameters"] == 11_689_512
    assert card["measured"]["gmacs"] == pytest.approx(1.81, abs=0.01)
    assert card["options_used"] == {"num_classes": 1000}
    assert card["name"] == "resnet18" and card["task"] == "classification"
