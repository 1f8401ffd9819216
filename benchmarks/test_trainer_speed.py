"""The trainer against the plain loop of the notes, same model (LeNet), data (mnist5k), batch.

The plain loop is the notes' routine: a DataLoader over a TensorDataset, zero_grad,
forward, CrossEntropyLoss, backward, step. The trainer's figure is its training throughput
(samples/s over the training batches of one epoch, as it reports it). Target: ratio >= 1.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.data import load_dataset
from zoo.train import TrainConfig, Trainer

BATCH = 64


def _train_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    splits = load_dataset("mnist5k", zoo.get_spec("lenet").input)
    xs, ys = zip(*(splits.train[i] for i in range(len(splits.train))), strict=True)
    return torch.stack(xs), torch.stack(ys)


def _plain_epoch(x: torch.Tensor, y: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = zoo.create_model("lenet").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    started = time.perf_counter()
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return len(x) / (time.perf_counter() - started)


def _trainer_epoch(tmp_path_factory: pytest.TempPathFactory) -> float:
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        "lenet",
        data="mnist5k",
        epochs=1,
        batch_size=BATCH,
        out=str(out),
        tensorboard=False,
        augment="none",  # the plain loop does not augment
        scheduler="none",
        progress=False,
    )
    result = Trainer(config, echo=lambda line: None).fit()
    return float(result.metrics["history"][0]["samples_per_second"])


def test_trainer_is_not_slower_than_the_plain_loop(benchmark, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    x, y = _train_tensors()
    plain = [_plain_epoch(x, y) for _ in range(3)]
    rates = benchmark.pedantic(lambda: _trainer_epoch(tmp_path_factory), rounds=3, iterations=1)
    trainer = [_trainer_epoch(tmp_path_factory) for _ in range(2)] + [rates]
    plain_median, trainer_median = sorted(plain)[1], sorted(trainer)[1]
    benchmark.extra_info.update(
        plain_loop_samples_per_s=round(plain_median),
        trainer_samples_per_s=round(trainer_median),
        ratio=round(trainer_median / plain_median, 3),
    )
    print(
        f"\nplain loop {plain_median:,.0f} samples/s, trainer {trainer_median:,.0f} samples/s, "
        f"ratio {trainer_median / plain_median:.2f}"
    )
