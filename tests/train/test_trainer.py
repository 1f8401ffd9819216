"""The trainer on real (embedded) data: exact resume, checkpoints, failures, outputs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from tests.helpers import assert_identical, weights
from zoo.checkpoint import CheckpointError, load_checkpoint
from zoo.plugins.classification import Classification
from zoo.tasks import Task
from zoo.train import TrainConfig, Trainer, TrainingError, train
from zoo.train import trainer as trainer_module

FAST = {"data": "digits", "batch_size": 64, "tensorboard": False, "progress": False}


def _quiet(config: TrainConfig) -> Trainer:
    return Trainer(config, echo=lambda line: None)


def test_resume_after_k_epochs_is_bit_identical(tmp_path: Path) -> None:
    options = {**FAST, "optimizer": "sgd", "lr": 0.05, "scheduler": "step", "step_size": 1}
    straight = _quiet(TrainConfig("lenet", epochs=3, out=str(tmp_path / "a"), **options)).fit()
    _quiet(TrainConfig("lenet", epochs=1, out=str(tmp_path / "b"), **options)).fit()
    resumed = _quiet(
        TrainConfig("lenet", epochs=3, out=str(tmp_path / "b"), resume="auto", **options)
    ).fit()
    assert_identical(weights(straight.run_dir), weights(resumed.run_dir))
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2, 3]
    assert resumed.metrics["history"][-1]["val"] == straight.metrics["history"][-1]["val"]
    assert resumed.metrics["test"] == straight.metrics["test"]


def test_ctrl_c_saves_a_checkpoint_that_resumes_mid_epoch_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dropout makes the global RNG part of the result: the LSTM on names, with dropout.
    options = {
        **FAST,
        "data": "names",
        "model_args": {"dropout": 0.3, "num_layers": 2},
        "batch_size": 128,
        "epochs": 2,
    }
    straight = _quiet(TrainConfig("lstm", out=str(tmp_path / "a"), **options)).fit()

    original = trainer_module.Batches.epoch

    def interrupted(self: Any, epoch: int, start_batch: int = 0):  # type: ignore[no-untyped-def]
        for index, batch in enumerate(original(self, epoch, start_batch)):
            if self.shuffle and epoch == 1 and index == 3:
                os.kill(os.getpid(), signal.SIGINT)  # the real Ctrl-C path
            yield batch

    monkeypatch.setattr(trainer_module.Batches, "epoch", interrupted)
    stopped = _quiet(TrainConfig("lstm", out=str(tmp_path / "b"), **options)).fit()
    assert stopped.status == "interrupted"
    meta = load_checkpoint(stopped.run_dir).meta
    assert (meta["progress"]["epoch"], meta["progress"]["batch"]) == (1, 4)
    monkeypatch.setattr(trainer_module.Batches, "epoch", original)
    resumed = _quiet(
        TrainConfig("lstm", out=str(tmp_path / "b"), resume=str(tmp_path / "b"), **options)
    ).fit()
    assert resumed.status == "completed"
    assert_identical(weights(straight.run_dir), weights(resumed.run_dir))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    _quiet(TrainConfig("lenet", epochs=1, out=str(out), **FAST)).fit()
    good = weights(out)
    calls = {"n": 0}
    real_loss = Classification.loss

    def poisoned(self: Task, outputs: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = real_loss(self, outputs, x, y)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(Classification, "loss", poisoned)
    with pytest.raises(
        TrainingError, match=r"the loss became nan at epoch 2, step \d+.*last good checkpoint"
    ):
        _quiet(TrainConfig("lenet", epochs=2, out=str(out), resume="auto", **FAST)).fit()
    assert_identical(good, weights(out))
    assert load_checkpoint(out).meta["epoch"] == 1


def test_checkpoint_layout_tags_and_pruning(tmp_path: Path) -> None:
    result = _quiet(
        TrainConfig("lenet", epochs=3, out=str(tmp_path), lr=1e-9, optimizer="sgd", **FAST)
    ).fit()
    run = result.run_dir
    assert (run / "last").is_symlink() and (run / "best").is_symlink()
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(kept) <= 2
    assert {(run / "last").resolve().name, (run / "best").resolve().name} == set(kept)
    for name in ("model.safetensors", "state.pt", "meta.json"):
        assert (run / "last" / name).is_file()
    meta = json.loads((run / "last" / "meta.json").read_text())
    assert meta["model"] == "lenet" and meta["epoch"] == 3
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["dataset"]["class_names"] == [str(i) for i in range(10)]
    state = torch.load(run / "last" / "state.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng", "scaler"} <= set(state)
    assert not list(run.glob(".*tmp*")) and not list((run / "checkpoints").glob(".*"))


def test_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    _quiet(TrainConfig("lenet", epochs=1, out=str(tmp_path), **FAST)).fit()
    before = weights(tmp_path)
    with pytest.raises(zoo.UsageError, match=r"already holds a checkpoint.*--resume auto"):
        _quiet(TrainConfig("lenet", epochs=1, out=str(tmp_path), **FAST))
    assert_identical(before, weights(tmp_path))


def test_checkpoint_of_another_model_or_shape_is_refused(tmp_path: Path) -> None:
    _quiet(TrainConfig("lenet", epochs=1, out=str(tmp_path), **FAST)).fit()
    checkpoint = load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="holds model 'lenet', not 'googlenet'"):
        checkpoint.load_into(zoo.create_model("googlenet"), "googlenet")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        checkpoint.load_into(zoo.create_model("lenet", num_classes=3), "lenet")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


def test_early_stopping_and_outputs(tmp_path: Path) -> None:
    result = _quiet(
        TrainConfig(
            "lenet",
            epochs=6,
            out=str(tmp_path),
            lr=1e-12,
            optimizer="sgd",
            early_stopping=1,
            **{**FAST, "tensorboard": True},
        )
    ).fit()
    assert result.status == "early_stopping"
    assert len(result.metrics["history"]) == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "early_stopping"
    test = metrics["test"]
    assert {"accuracy", "oa", "aa", "kappa", "confusion_matrix", "per_class_accuracy"} <= set(test)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0
    tags = _tensorboard(tmp_path).Tags()
    assert {"epoch/val_accuracy", "epoch/train_accuracy", "epoch/lr", "step/loss"} <= set(
        tags["scalars"]
    )
    assert tags["graph"] is True  # the model graph traced
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["early_stopping"] == 1 and saved["model"] == "lenet"


def test_lenet_learns_digits(tmp_path: Path) -> None:
    result = train("lenet", epochs=4, out=str(tmp_path), **FAST)
    assert result.metrics["test"]["accuracy"] > 0.9
    assert result.metrics["test"]["accuracy"] > result.metrics["majority_baseline_accuracy"] + 0.5


def _tensorboard(run_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return events


def test_vae_loss_falls_and_reconstructions_are_saved_and_logged(tmp_path: Path) -> None:
    result = train("vae", epochs=3, out=str(tmp_path), **{**FAST, "tensorboard": True})
    losses = [h["train"]["loss"] for h in result.metrics["history"]]
    assert losses[-1] < losses[0]
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    assert result.metrics["monitor"] == "val_loss"
    tags = _tensorboard(tmp_path).Tags()
    assert {"val/originals", "val/reconstructions"} <= set(tags["images"])
    assert len(_tensorboard(tmp_path).Images("val/reconstructions")) == 3
    assert {"epoch/val_loss", "epoch/train_kld", "epoch/lr", "step/loss"} <= set(tags["scalars"])


def test_freeze_keeps_the_first_tensors_fixed_and_deterministic_is_scoped(
    tmp_path: Path,
) -> None:
    # lenet has 10 parameter tensors: train the last two. No cosine: it would end at lr 0.
    options = {**FAST, "freeze": 8, "deterministic": True, "scheduler": "none"}
    _quiet(TrainConfig("lenet", epochs=1, out=str(tmp_path), **options)).fit()
    first = weights(tmp_path)
    _quiet(TrainConfig("lenet", epochs=2, out=str(tmp_path), resume="auto", **options)).fit()
    second = weights(tmp_path)
    params = [name for name, _ in zoo.create_model("lenet").named_parameters()]  # model order
    frozen, trained = params[:8], params[8:]
    assert all(torch.equal(first[k], second[k]) for k in frozen)
    assert not any(torch.equal(first[k], second[k]) for k in trained)
    assert torch.are_deterministic_algorithms_enabled() is False  # restored after fit()


def test_unknown_monitor_is_refused_before_training() -> None:
    with pytest.raises(zoo.UsageError, match="--monitor 'val_acc' is not one of val_accuracy"):
        Trainer(TrainConfig("lenet", monitor="val_acc", **FAST))


def test_block_models_are_not_trainable() -> None:
    with pytest.raises(zoo.UsageError, match=r"building block.*--task classification"):
        Trainer(TrainConfig("bam", **FAST))


def test_the_task_options_are_checked_like_builder_options() -> None:
    trainer = Trainer(TrainConfig("vae", task_args={"kld_weight": 0.25}, **FAST))
    task: Any = trainer.task
    assert (task.kld_weight, task.reduction) == (0.25, "elbo")
    valid = "valid arguments: kld_weight, loss"
    with pytest.raises(zoo.InvalidArgumentsError, match=f"task 'vae' does not take 'kld'; {valid}"):
        Trainer(TrainConfig("vae", task_args={"kld": 0.25}, **FAST))
    with pytest.raises(zoo.InvalidArgumentsError, match="kld_weight must be finite"):
        Trainer(TrainConfig("vae", task_args={"kld_weight": float("nan")}, **FAST))
    with pytest.raises(zoo.InvalidArgumentsError, match="task 'classification' does not take"):
        Trainer(TrainConfig("lenet", task_args={"kld_weight": 0.5}, **FAST))


def test_a_model_whose_task_nobody_registers_is_refused_by_name(fresh_plugins) -> None:
    from tests.helpers import tiny_spec
    from zoo._pluginmanager import get_plugins

    class Orphan:
        @zoo.hookimpl
        def zoo_register_models(self, registry):  # type: ignore[no-untyped-def]
            registry.register(tiny_spec("orphan", task="generative"))

    get_plugins().add_plugin(Orphan(), name="orphan")
    with pytest.raises(zoo.UsageError, match=r"model 'orphan' names task 'generative', which no"):
        Trainer(TrainConfig("orphan", **FAST))


def test_a_non_vae_model_is_refused_by_the_vae_task(fresh_plugins) -> None:
    from tests.helpers import tiny_spec
    from zoo._pluginmanager import get_plugins

    class NotAVae:
        @zoo.hookimpl
        def zoo_register_models(self, registry):  # type: ignore[no-untyped-def]
            registry.register(tiny_spec("notavae", task="vae"))

    get_plugins().add_plugin(NotAVae(), name="notavae")
    with pytest.raises(zoo.UsageError, match=r"task 'vae' needs \(reconstruction"):
        Trainer(TrainConfig("notavae", **FAST))


def test_cuda_requested_without_one_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    with pytest.raises(zoo.UsageError, match="no CUDA device"):  # before the run dir is made
        _quiet(TrainConfig("lenet", device="cuda", out=str(out), **FAST))
    assert not out.exists()


def test_resuming_with_more_epochs_rebuilds_the_cosine_schedule(tmp_path: Path) -> None:
    """A finished 2-epoch cosine run resumed with --epochs 4 trains epochs 3 and 4 at the rates
    a 4-epoch run has there, not at the end of the 2-epoch schedule (learning rate 0)."""
    from zoo.train.config import TrainConfig
    from zoo.train.trainer import Trainer, train

    options = dict(
        data="digits", batch_size=256, lr=0.01, tensorboard=False, progress=False, seed=3
    )
    train("lenet", epochs=2, out=str(tmp_path / "run"), **options)
    lines: list[str] = []
    config = TrainConfig.from_dict(
        {"model": "lenet", "epochs": 4, "out": str(tmp_path / "run"), "resume": "auto", **options}
    )
    extended = Trainer(config, echo=lines.append).fit()
    straight = train("lenet", epochs=4, out=str(tmp_path / "straight"), **options)
    rates = [h["lr"] for h in extended.metrics["history"]]
    wanted = [h["lr"] for h in straight.metrics["history"]]
    assert len(rates) == 4 and rates[2] > 0
    assert rates[2:] == pytest.approx(wanted[2:], rel=1e-9)
    assert any(
        "--epochs 4 (the run was planned for 2): the cosine schedule is rebuilt" in line
        for line in lines
    ), lines
