"""What a sequence model has to beat on ``names``: the majority class and an untuned naive Bayes.

Both are measured on the splits zoo trains and tests on: ``load_dataset("names", ...)`` with
the seed and the validation and test fractions of ``zoo train`` (``--seed``, default 0). Run

    python benchmarks/names_baselines.py                      # the baselines, seeds 0 1 2
    python benchmarks/names_baselines.py --train gru --train docs/recipes/names-gru.toml \\
        --json benchmarks/results/names-cpu.json              # and zoo train runs: minutes

- **majority**: always answer the commonest class of the *training* split. (``zoo train``'s
  ``majority_baseline_accuracy`` takes the commonest class of the test split, which a
  classifier cannot know; on ``names`` the two agree.)
- **naive Bayes**: scikit-learn's ``MultinomialNB()`` on counts of character 1- to 3-grams
  (``CountVectorizer(analyzer="char_wb", ngram_range=(1, 3))``), every setting at its
  default, fitted on the training split (what the models learn from; they use the validation
  split only to pick their best epoch), and, as a second figure, on training + validation.
- ``--train MODEL``, ``--train CONFIG.toml`` or ``--train "MODEL CONFIG.toml"``: ``zoo train``
  with zoo's defaults, a config file's options, or a config file's options for another model
  (as ``zoo train MODEL --config CONFIG``), once per seed; test accuracy of the best
  checkpoint, wall time and training speed.

The table is Markdown; ``--json`` also records the CPU, its relevant flags, the thread count
and the library versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB

import zoo
from zoo.data import load_dataset
from zoo.data.tokens import TokenDataset
from zoo.datasets import DataSplits, labels_of
from zoo.train import TrainConfig, Trainer
from zoo.train.config import load_config_file

DATASET = "names"
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
#: CPU flags that decide the speed of fp32/bf16 training here.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def splits(seed: int) -> DataSplits:
    """The splits ``zoo train --seed SEED`` uses (the fractions are its defaults)."""
    defaults = TrainConfig(model="gru")
    return load_dataset(
        DATASET,
        zoo.get_spec("gru").input,
        seed=seed,
        val_fraction=defaults.val_fraction,
        test_fraction=defaults.test_fraction,
    )


def majority_accuracy(data: DataSplits) -> float:
    """Test accuracy of always answering the commonest class of the training split."""
    commonest = int(torch.bincount(labels_of(data.train)).argmax())
    return float((labels_of(data.test) == commonest).float().mean())


def _texts(split: Any) -> list[str]:
    assert isinstance(split, TokenDataset), split
    return list(split.texts)


def naive_bayes_accuracy(data: DataSplits, *, with_val: bool = False) -> float:
    """Test accuracy of an untuned character 1-3-gram multinomial naive Bayes."""
    parts = [data.train, data.val] if with_val else [data.train]
    texts = [text for part in parts for text in _texts(part)]
    labels = torch.cat([labels_of(part) for part in parts]).numpy()
    vectorizer = CountVectorizer(analyzer="char_wb", ngram_range=(1, 3))
    model = MultinomialNB().fit(vectorizer.fit_transform(texts), labels)
    predicted = model.predict(vectorizer.transform(_texts(data.test)))
    return float((predicted == labels_of(data.test).numpy()).mean())


def baselines(seed: int) -> dict[str, float]:
    data = splits(seed)
    return {
        "majority": majority_accuracy(data),
        "naive_bayes": naive_bayes_accuracy(data),
        "naive_bayes_train_val": naive_bayes_accuracy(data, with_val=True),
    }


def train_run(what: str, seed: int) -> dict[str, Any]:
    """``zoo train [MODEL] [--config CONFIG]`` on ``names`` with ``--seed SEED``: ``what`` is a
    model (zoo's defaults), a config file, or both, separated by a space."""
    options: dict[str, Any] = {}
    for part in what.split():
        if part.endswith(CONFIG_SUFFIXES):
            options = {**load_config_file(part), **options}
        else:
            options["model"] = part
    options.update(data=DATASET, seed=seed, tensorboard=False, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        config = TrainConfig.from_dict({**options, "out": str(Path(tmp) / "run")})
        # The trainer's epoch lines go to stderr: stdout is the table.
        result = Trainer(config, echo=lambda line: print(line, file=sys.stderr)).fit()
        seconds = time.perf_counter() - started
    history = result.metrics["history"]
    return {
        "accuracy": result.metrics["test"]["accuracy"],
        "best_epoch": result.metrics["best_epoch"],
        "epochs": len(history),
        "seconds": seconds,
        "samples_per_second": statistics.median(e["samples_per_second"] for e in history),
    }


def environment() -> dict[str, Any]:
    cpu, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": [f for f in FLAGS if f in flags],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("zoo", "torch", "scikit-learn", "faker")},
    }


#: ``--nb-variants``: every untuned naive Bayes on character n-grams that one might call
#: "the" baseline: two vectorizers, two analyzers, seven n-gram ranges, three NB models.
NB_RANGES = ((1, 2), (1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5))


def nb_variants(seeds: list[int]) -> list[dict[str, Any]]:
    """Test accuracy of each untuned NB variant (every setting at its default) per seed."""
    import itertools

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import BernoulliNB, ComplementNB

    data = {}
    for seed in seeds:
        split = splits(seed)
        data[seed] = (
            _texts(split.train), labels_of(split.train).numpy(),
            _texts(split.test), labels_of(split.test).numpy(),
        )  # fmt: skip
    rows = []
    kinds = itertools.product(
        (CountVectorizer, TfidfVectorizer),
        ("char_wb", "char"),
        NB_RANGES,
        (MultinomialNB, ComplementNB, BernoulliNB),
    )
    for vectorizer, analyzer, ngrams, model in kinds:
        accuracies = []
        for train_x, train_y, test_x, test_y in data.values():
            features = vectorizer(analyzer=analyzer, ngram_range=ngrams)
            fitted = model().fit(features.fit_transform(train_x), train_y)
            accuracies.append(float((fitted.predict(features.transform(test_x)) == test_y).mean()))
        rows.append(
            {
                "vectorizer": vectorizer.__name__,
                "analyzer": analyzer,
                "ngram_range": list(ngrams),
                "model": model.__name__,
                "mean": statistics.mean(accuracies),
                "accuracy": accuracies,
            }
        )
    return rows


def _percent(values: list[float]) -> str:
    shown = " / ".join(f"{100 * v:.1f}" for v in values)
    return f"{shown} (mean {100 * statistics.mean(values):.1f})" if len(values) > 1 else shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="'[MODEL] [CONFIG]'",
        help="also zoo train a model with its defaults, a config file, or a model with a "
        "config file's options (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="write the figures and the machine here")
    parser.add_argument(
        "--nb-variants",
        action="store_true",
        help="instead: every untuned naive Bayes variant (Count/Tfidf, char/char_wb, n-gram "
        "ranges 1-2 to 2-5, Multinomial/Complement/Bernoulli), mean test accuracy over --seeds",
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.nb_variants:
        variants = sorted(nb_variants(seeds), key=lambda r: -r["mean"])
        print(f"| naive Bayes on `{DATASET}` test, seeds {args.seeds} | mean accuracy % |")
        print("| --- | --- |")
        for r in variants:
            low, high = r["ngram_range"]
            name = f"{r['vectorizer']}({r['analyzer']}, {low}-{high}) + {r['model']}"
            print(f"| {name} | {100 * r['mean']:.2f} |")
        if args.json:
            report = {"dataset": DATASET, "seeds": seeds, "environment": environment()}
            args.json.write_text(json.dumps({**report, "nb_variants": variants}, indent=2) + "\n")
        return 0
    rows: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        for name, accuracy in baselines(seed).items():
            rows.setdefault(name, []).append({"seed": seed, "accuracy": accuracy})
    for what in args.train:
        for seed in seeds:
            run = train_run(what, seed)
            print(f"{what} seed {seed}: {100 * run['accuracy']:.2f}%", file=sys.stderr)
            rows.setdefault(what, []).append({"seed": seed, **run})
    print(f"| on `{DATASET}` test, seeds {args.seeds} | accuracy % | train s |")
    print("| --- | --- | --- |")
    for name, runs in rows.items():
        seconds = [r["seconds"] for r in runs if "seconds" in r]
        timing = f"{statistics.median(seconds):.0f}" if seconds else ""
        print(f"| {name} | {_percent([r['accuracy'] for r in runs])} | {timing} |")
    if args.json:
        report = {"dataset": DATASET, "seeds": seeds, "environment": environment(), "rows": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
