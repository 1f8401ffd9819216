"""zoo bench-train: the behaviour (real workers, tiny runs), never the speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from zoo.bench import training
from zoo.bench.training import BUSY_SHARE, SCHEMA, Round, TrainBenchRun, Variant, parse_variant
from zoo.cli import cli

#: 3 steps of 512 digits per epoch: each worker takes a few seconds, most of it imports.
TINY = ["--data", "digits", "--batch-size", "512", "--epochs", "1", "--warmup-epochs", "0"]


def bench_train(*args: str) -> Any:
    return CliRunner().invoke(cli, ["bench-train", *args])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-train") / "run.json"
    variants = "hand,trainer,channels-last"
    result = bench_train(
        "lenet", *TINY, "--rounds", "2", "--variants", variants, "--json", str(out)
    )
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_the_json_records_every_variant_with_its_rounds_and_the_machine(
    tiny_run: tuple[Any, dict[str, Any]],
) -> None:
    _, data = tiny_run
    assert data["schema"] == SCHEMA
    assert [v["name"] for v in data["variants"]] == ["hand", "trainer", "channels-last"]
    assert [v["options"] for v in data["variants"]] == [None, {}, {"channels_last": True}]
    for variant in data["variants"]:
        assert variant["status"] == "ok" and len(variant["rounds"]) == 2
        for r in variant["rounds"]:
            assert len(r["samples_per_s"]) == 1 and r["samples_per_s"][0] > 0
            assert len(r["load_avg"]) == 3 and r["others_cpu_share"] >= 0
        quiet = [r for r in variant["rounds"] if r["others_cpu_share"] <= BUSY_SHARE]
        assert variant["quiet_rounds"] == len(quiet)
        medians = sorted(r["median"] for r in quiet or variant["rounds"])
        assert variant["samples_per_s"] == pytest.approx(sum(medians) / len(medians))
        assert variant["spread"] == (
            pytest.approx((medians[-1] - medians[0]) / variant["samples_per_s"])
            if len(medians) > 1
            else None
        )
    hand, trainer, _ = data["variants"]
    assert hand["vs_hand"] == 1.0
    assert trainer["vs_hand"] == pytest.approx(trainer["samples_per_s"] / hand["samples_per_s"])
    env = data["environment"]
    assert {"cpu", "cpu_flags", "torch", "threads", "load_avg_start", "load_avg_end"} <= set(env)
    settings = data["settings"]
    assert (settings["model"], settings["data"], settings["batch_size"]) == ("lenet", "digits", 512)
    assert data["best"]["variant"] in ("trainer", "channels-last")


def test_each_variant_of_each_round_ran_in_its_own_process_in_alternating_order(
    tiny_run: tuple[Any, dict[str, Any]],
) -> None:
    _, data = tiny_run
    pids = [r["pid"] for v in data["variants"] for r in v["rounds"]]
    assert len(set(pids)) == len(pids) == 6
    started = {
        (v["name"], i): r["start_s"] for v in data["variants"] for i, r in enumerate(v["rounds"])
    }
    first = sorted((s, name) for (name, i), s in started.items() if i == 0)
    second = sorted((s, name) for (name, i), s in started.items() if i == 1)
    assert [n for _, n in first] == ["hand", "trainer", "channels-last"]
    assert [n for _, n in second] == ["channels-last", "trainer", "hand"]
    assert first[-1][0] < second[0][0]


def test_the_table_has_a_row_per_variant_against_the_hand_loop(
    tiny_run: tuple[Any, dict[str, Any]],
) -> None:
    result, _ = tiny_run
    rows = [line for line in result.output.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| variant | samples/s |")
    assert [r.split("|")[1].strip().strip("*") for r in rows[2:]] == [
        "hand",
        "trainer",
        "channels-last",
    ]
    assert rows[2].split("|")[4].strip() == "1.00x"
    assert "lenet on digits, batch 512" in result.output


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("hand,bf61", r"--variants: unknown variant 'bf61' \(did you mean 'bf16'\?\)"),
        ("bf16+fp32", "--variants: 'bf16\\+fp32' sets precision twice"),
        ("fp16", "variant 'fp16': --precision fp16 needs CUDA .*; on CPU use bf16 or fp32"),
    ],
)
def test_bad_variants_are_refused_in_one_line_before_any_worker(
    monkeypatch: pytest.MonkeyPatch, variants: str, message: str
) -> None:
    monkeypatch.setattr(training, "spawn_worker", lambda *a, **k: pytest.fail("a worker ran"))
    result = bench_train("lenet", "--device", "cpu", "--variants", variants)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.output
    assert re.search(message, lines[0]), lines[0]


def test_a_model_that_is_no_classifier_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "spawn_worker", lambda *a, **k: pytest.fail("a worker ran"))
    result = bench_train("vae")
    assert result.exit_code == 2
    assert "model 'vae' has task 'vae': pick a classifier" in result.output


def test_a_bad_json_path_is_refused_before_measuring(tmp_path: Path) -> None:
    result = bench_train("lenet", "--json", str(tmp_path))
    assert result.exit_code == 2
    assert "is a directory" in result.output


def test_variants_combine_options() -> None:
    assert parse_variant("hand") is None
    assert parse_variant("trainer") == {}
    assert parse_variant("channels-last+bf16+compile") == {
        "channels_last": True,
        "precision": "bf16",
        "compile": True,
    }


def test_the_others_share_counts_a_process_that_is_not_the_worker() -> None:
    """A busy process beside the measurement is counted (the benchmark's own workers are not:
    their CPU time is subtracted once they are reaped)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        others = training.Others()
        others.start()
        time.sleep(1.0)
        share, _ = others.share()
    finally:
        busy.kill()
        busy.wait()
    cpus = psutil.cpu_count()
    assert share >= 0.8 / cpus > BUSY_SHARE


def test_no_variant_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "spawn_worker", lambda *a, **k: pytest.fail("a worker ran"))
    result = bench_train("lenet", "--variants", ",")
    assert result.exit_code == 2
    assert result.output == "zoo: error: --variants: give at least one variant\n"


def _round(median: float, others: float) -> Round:
    return Round(
        pid=1,
        samples_per_s=[median],
        median=median,
        first_epoch_s=0.1,
        final_loss=0.5,
        load_avg=[1.0, 1.0, 1.0],
        others_cpu_share=others,
        wall_s=1.0,
    )


def test_disturbed_rounds_are_left_out_and_a_variant_without_a_quiet_round_is_flagged() -> None:
    hand = Variant("hand", None, rounds=[_round(100, 0.0), _round(10, 0.5), _round(110, 0.05)])
    nhwc = Variant("channels-last", {"channels_last": True}, rounds=[_round(5, 0.4)] * 2)
    training._finish([hand, nhwc])
    assert (hand.samples_per_s, hand.quiet_rounds, hand.disturbed) == (105, 2, False)
    assert hand.spread == pytest.approx(10 / 105)
    assert (nhwc.samples_per_s, nhwc.quiet_rounds, nhwc.disturbed) == (5, 0, True)
    assert nhwc.vs_hand == pytest.approx(5 / 105)
    run = TrainBenchRun(
        environment={"cpu": "a CPU", "torch": "2"},
        settings={
            "model": "lenet",
            "data": "mnist5k",
            "batch_size": 64,
            "device": "cpu",
            "threads": 2,
            "rounds": 3,
            "warmup_epochs": 1,
            "epochs": 3,
        },
        variants=[hand, nhwc],
    )
    lines = training.describe(run)
    assert "note: 1 rounds during which other processes used over 10% " in lines[-2]
    assert lines[-1].startswith(
        "warning: other processes used up to 40% of the CPUs during every round of channels-last"
    )
    rows = training.markdown_table(run).splitlines()[2:]
    assert rows[0].endswith("| 5% | 2/3 |") and rows[1].endswith("| 40% (busy) | 0/2 |")
