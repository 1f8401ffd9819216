from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import zoo
from zoo.train.config import SCHEDULERS, TrainConfig, load_config_file
from zoo.train.optim import Warmup, build_optimizer, build_scheduler


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs: must be an integer >= 1, got 0"),
        ("batch_size", -2, "batch_size: must be an integer >= 1, got -2"),
        ("lr", 0.0, r"lr: must be a finite number > 0, got 0\.0"),
        ("optimizer", "rmsprop", "optimizer: must be one of sgd, adam, adamw, got 'rmsprop'"),
        ("grad_clip", 0.0, r"grad_clip: must be a finite number > 0 \(or nothing\)"),
        ("gamma", 1.5, "gamma: must be a finite number > 0 and <= 1, got 1.5"),
    ],
)
def test_bad_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(zoo.InvalidArgumentsError, match=message):
        TrainConfig("lenet", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("legacy", "task_args"),
    [
        ({"vae_loss": "elbo", "kld_weight": 1.0}, {}),  # zoo 0.1's defaults, in every config
        ({"vae_loss": "notes", "kld-weight": 0.1}, {"loss": "notes", "kld_weight": 0.1}),
        ({"kld_weight": 0.5, "task_args": {"kld_weight": 0.2}}, {"kld_weight": 0.2}),
    ],
)
def test_zoo_0_1_vae_options_become_task_options(legacy: dict, task_args: dict) -> None:
    config = TrainConfig.from_dict({"model": "vae", **legacy})
    assert config.task_args == task_args
    assert "vae_loss" not in config.to_dict() and "kld_weight" not in config.to_dict()


def test_unknown_option_suggests_the_closest() -> None:
    with pytest.raises(zoo.UsageError, match=r"unknown training option 'epoch' .*'epochs'"):
        TrainConfig.from_dict({"model": "lenet", "epoch": 3})


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_config_files(tmp_path: Path, suffix: str) -> None:
    text = {
        ".toml": 'model = "lenet"\nbatch-size = 32\nmilestones = [2, 4]\n',
        ".yaml": "model: lenet\nbatch-size: 32\nmilestones: [2, 4]\n",
        ".json": '{"model": "lenet", "batch-size": 32, "milestones": [2, 4]}',
    }[suffix]
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    config = TrainConfig.from_dict(load_config_file(path))
    assert (config.batch_size, config.milestones) == (32, (2, 4))
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_builds_and_decays(name: str) -> None:
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(
        "lenet",
        scheduler=name,
        step_size=1,
        milestones=(1,),
        gamma=0.5,
        restart_period=2,
        plateau_patience=0,
        monitor="val_loss",
        epochs=4,
    )
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    if name == "none":
        assert scheduler is None
        return
    for _ in range(2 if name == "plateau" else 1):  # plateau needs one non-improving epoch
        optimizer.step()
        scheduler.step(1.0) if name == "plateau" else scheduler.step()
    assert optimizer.param_groups[0]["lr"] < config.lr


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_optimizer_is_fused_on_cpu_and_steps_as_the_default_one_does(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    twin = copy.deepcopy(model)
    config = TrainConfig("lenet", optimizer=name, lr=0.01, weight_decay=1e-3)
    fused = build_optimizer(model, config)
    assert fused.param_groups[0]["fused"] is True
    kind = type(fused)
    plain = kind(
        twin.parameters(),
        lr=0.01,
        weight_decay=1e-3,
        **({"momentum": config.momentum} if name == "sgd" else {}),
    )
    x = torch.randn(16, 5)
    for _ in range(5):
        for net, optimizer in ((model, fused), (twin, plain)):
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_warmup_is_linear_and_ends_at_the_base_rate() -> None:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.4)
    warmup = Warmup(optimizer, steps=4)
    rates = []
    for step in range(6):
        warmup.apply(step)
        rates.append(round(optimizer.param_groups[0]["lr"], 6))
    assert rates == [0.1, 0.2, 0.3, 0.4, 0.4, 0.4]


NAMES_RECIPE = Path(__file__).parents[2] / "docs" / "recipes" / "names-gru.toml"


@pytest.mark.parametrize("model", [None, "lstm"])
def test_the_names_recipe_is_a_valid_config_of_a_bidirectional_model(model: str | None) -> None:
    """What `zoo train [MODEL] --config docs/recipes/names-gru.toml` does before training: the
    command line's MODEL replaces the file's."""
    values = load_config_file(NAMES_RECIPE)
    config = TrainConfig.from_dict({**values, **({"model": model} if model else {})})
    built = zoo.create_model(config.model, **config.model_args)
    assert isinstance(built.rnn, torch.nn.LSTM if model == "lstm" else torch.nn.GRU)
    assert built.rnn_reverse is not None and (config.data, config.epochs) == ("names", 20)
