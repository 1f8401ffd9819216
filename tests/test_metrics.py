"""zoo.metrics against scikit-learn and direct computation; batch accumulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from zoo.metrics import ClassificationMetrics, as_confusion_matrix, cohen_kappa

NUM_CLASSES = 7
SAMPLES = 500


def _random_data(
    seed: int = 0, samples: int = SAMPLES, classes: int = NUM_CLASSES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that are right more often than chance, so kappa and top-k are not trivial."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, classes, (samples,), generator=generator)
    logits = torch.randn(samples, classes, generator=generator)
    logits[torch.arange(samples), targets] += 1.0
    return logits, targets


def _batches(total: int, sizes: list[int]) -> list[slice]:
    """Uneven consecutive slices covering range(total), cycling through ``sizes``."""
    slices, start, i = [], 0, 0
    while start < total:
        stop = min(total, start + sizes[i % len(sizes)])
        slices.append(slice(start, stop))
        start, i = stop, i + 1
    return slices


# --- classification --------------------------------------------------------------------------


def test_classification_matches_sklearn() -> None:
    logits, targets = _random_data()
    metrics = ClassificationMetrics(NUM_CLASSES, topk=(1, 3, 5))
    metrics.update(logits, targets)
    result = metrics.compute()

    y_true, scores = targets.numpy(), logits.numpy()
    y_pred = scores.argmax(axis=1)
    labels = list(range(NUM_CLASSES))
    assert result["samples"] == SAMPLES
    assert result["loss"] is None
    assert (
        result["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    )
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert result["oa"] == result["accuracy"]
    assert result["aa"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert result["kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred), abs=1e-12)
    for k in (3, 5):
        expected = skm.top_k_accuracy_score(y_true, scores, k=k, labels=labels)
        assert result[f"top{k}_accuracy"] == pytest.approx(expected, abs=1e-12)
    recalls = skm.recall_score(y_true, y_pred, labels=labels, average=None)
    assert list(result["per_class_accuracy"]) == [str(i) for i in labels]
    assert list(result["per_class_accuracy"].values()) == pytest.approx(recalls.tolist())
    assert 0.0 < result["kappa"] < result["accuracy"] < result["top3_accuracy"] < 1.0


def test_compute_is_json_ready() -> None:
    logits, targets = _random_data(samples=40)
    metrics = ClassificationMetrics(NUM_CLASSES, class_names=[f"c{i}" for i in range(7)])
    metrics.update(logits, targets, loss=torch.tensor(0.5))
    result = metrics.compute()
    assert json.loads(json.dumps(result)) == result
    for key in ("loss", "accuracy", "top5_accuracy", "oa", "aa", "kappa"):
        assert type(result[key]) is float, key
    assert type(result["samples"]) is int
    assert all(type(v) is int for row in result["confusion_matrix"] for v in row)


def test_many_small_batches_equal_one_big_batch() -> None:
    logits, targets = _random_data(seed=1)
    losses = torch.rand(SAMPLES, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    whole = ClassificationMetrics(NUM_CLASSES, topk=(1, 2, 5))
    whole.update(logits, targets, loss=float(losses.mean()))
    pieces = ClassificationMetrics(NUM_CLASSES, topk=(1, 2, 5))
    for part in _batches(SAMPLES, [1, 17, 64, 3, 100]):
        pieces.update(logits[part], targets[part], loss=losses[part].mean())
    a, b = whole.compute(), pieces.compute()
    assert torch.equal(whole.confusion_matrix, pieces.confusion_matrix)
    assert a.pop("loss") == pytest.approx(b.pop("loss"), rel=1e-12)
    assert a == b  # exact: every other value derives from integer counts


def test_loss_is_weighted_by_batch_size() -> None:
    metrics = ClassificationMetrics(3)
    logits, targets = _random_data(samples=10, classes=3)
    metrics.update(logits[:2], targets[:2], loss=1.0)
    metrics.update(logits[2:], targets[2:], loss=torch.tensor(4.0))
    assert metrics.compute()["loss"] == pytest.approx((2 * 1.0 + 8 * 4.0) / 10)


def test_loss_averages_only_batches_that_gave_one() -> None:
    metrics = ClassificationMetrics(3)
    logits, targets = _random_data(samples=10, classes=3)
    metrics.update(logits[:4], targets[:4], loss=2.0)
    metrics.update(logits[4:], targets[4:])
    result = metrics.compute()
    assert result["samples"] == 10
    assert result["loss"] == pytest.approx(2.0)


def test_absent_classes() -> None:
    names = ["cat", "dog", "emu", "fox", "gnu"]
    targets = torch.tensor([0, 0, 0, 2, 2, 4])  # no "dog", no "fox"
    predictions = torch.tensor([0, 1, 3, 2, 0, 4])  # "dog" and "fox" are still predicted
    logits = torch.nn.functional.one_hot(predictions, 5).float()
    metrics = ClassificationMetrics(5, class_names=names)
    metrics.update(logits, targets)
    result = metrics.compute()
    assert result["per_class_accuracy"] == {
        "cat": pytest.approx(1 / 3),
        "dog": None,
        "emu": pytest.approx(1 / 2),
        "fox": None,
        "gnu": 1.0,
    }
    assert result["aa"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        balanced = skm.balanced_accuracy_score(targets.numpy(), predictions.numpy())
    assert result["aa"] == pytest.approx(balanced)
    assert result["oa"] == pytest.approx(3 / 6)
    assert result["confusion_matrix"][1] == [0] * 5


def test_topk_keys_skip_k_of_one_and_at_least_num_classes() -> None:
    logits, targets = _random_data(samples=20, classes=4)
    metrics = ClassificationMetrics(4, topk=(1, 2, 3, 4, 5, 3))
    metrics.update(logits, targets)
    result = metrics.compute()
    assert sorted(k for k in result if k.startswith("top")) == ["top2_accuracy", "top3_accuracy"]
    assert "top1_accuracy" not in result


def test_inputs_any_dtype_and_no_grad() -> None:
    logits, targets = _random_data(samples=30)
    reference = ClassificationMetrics(NUM_CLASSES)
    reference.update(logits, targets)
    metrics = ClassificationMetrics(NUM_CLASSES)
    metrics.update(logits.double().requires_grad_(), targets.int(), loss=torch.tensor(1.0))
    assert metrics.confusion_matrix.dtype == torch.int64
    assert metrics.confusion_matrix.device.type == "cpu"
    assert torch.equal(metrics.confusion_matrix, reference.confusion_matrix)


def test_confusion_matrix_property_is_a_copy() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(torch.eye(3), torch.arange(3))
    metrics.confusion_matrix.zero_()
    assert metrics.confusion_matrix.trace() == 3


def test_reset_and_empty() -> None:
    metrics = ClassificationMetrics(3)
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    metrics.update(torch.eye(3), torch.arange(3), loss=1.0)
    metrics.update(torch.empty(0, 3), torch.empty(0, dtype=torch.int64))
    assert metrics.compute()["samples"] == 3
    metrics.reset()
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    metrics.update(torch.eye(3)[:1], torch.tensor([1]))
    result = metrics.compute()
    assert result["samples"] == 1
    assert result["loss"] is None
    assert result["accuracy"] == 0.0


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64), r"logits must be \[batch, 3\]"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.int64), "logits must be"),
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.int64), "targets must be"),
        (torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.int64), "targets must be"),
        (torch.zeros(4, 3), torch.zeros(4), "integer class indices"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), r"must lie in \[0, 3\)"),
        (torch.zeros(2, 3), torch.tensor([-1, 0]), r"must lie in \[0, 3\)"),
    ],
)
def test_update_rejects_bad_input(logits: torch.Tensor, targets: torch.Tensor, match: str) -> None:
    metrics = ClassificationMetrics(3)
    with pytest.raises(ValueError, match=match):
        metrics.update(logits, targets)
    assert metrics.confusion_matrix.sum() == 0


def test_update_rejects_a_non_scalar_loss() -> None:
    with pytest.raises(ValueError, match="one value"):
        ClassificationMetrics(3).update(torch.eye(3), torch.arange(3), loss=torch.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "positive int"),
        ({"num_classes": 3, "class_names": ["a", "b"]}, "2 class names for 3 classes"),
        ({"num_classes": 2, "class_names": ["a", "a"]}, "unique"),
        ({"num_classes": 3, "topk": (0,)}, "positive ints"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClassificationMetrics(**kwargs)  # type: ignore[arg-type]


# --- kappa -----------------------------------------------------------------------------------


def test_kappa_by_hand() -> None:
    # n = 50, p_o = 35/50 = 0.7; rows (25, 25), columns (30, 20): p_e = (750 + 500)/2500 = 0.5
    assert cohen_kappa([[20, 5], [10, 15]]) == pytest.approx(0.4)
    assert cohen_kappa(torch.tensor([[20, 5], [10, 15]])) == pytest.approx(0.4)
    assert cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)


def test_kappa_edge_cases() -> None:
    assert cohen_kappa([[5, 0], [0, 5]]) == 1.0
    assert cohen_kappa([[0, 5], [5, 0]]) == -1.0
    assert cohen_kappa([[3, 3], [3, 3]]) == 0.0
    # p_e == 1: every sample is class 0 and predicted as class 0 -> defined as 1.0, not NaN
    assert cohen_kappa([[4, 0], [0, 0]]) == 1.0
    assert cohen_kappa([[7]]) == 1.0
    # every sample predicted as one class, true classes mixed: p_e < 1, kappa == 0
    assert cohen_kappa([[4, 0], [6, 0]]) == 0.0


def test_kappa_rejects_bad_matrices() -> None:
    with pytest.raises(ValueError, match="without samples"):
        cohen_kappa([[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="square"):
        cohen_kappa([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="integer counts"):
        cohen_kappa(torch.eye(2))
    with pytest.raises(ValueError, match="negative"):
        cohen_kappa([[1, -1], [0, 1]])


def test_kappa_exact_for_large_counts() -> None:
    big = 3_000_000_000  # n^2 overflows int64; the integer arithmetic must not
    assert cohen_kappa([[big, 0], [0, big]]) == 1.0
    assert math.isclose(cohen_kappa([[big, big], [0, big]]), 0.4, rel_tol=1e-15)


def test_kappa_rejects_a_matrix_without_classes() -> None:
    with pytest.raises(ValueError, match="at least one class"):
        cohen_kappa(np.zeros((0, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="at least one class"):
        cohen_kappa(torch.zeros(0, 0, dtype=torch.int64))


def test_the_confusion_check_takes_every_integer_dtype_and_copies() -> None:
    expected = torch.tensor([[3, 1], [0, 2]], dtype=torch.int64)
    for matrix in (
        [[3, 1], [0, 2]],
        np.array([[3, 1], [0, 2]], dtype=np.uint8),
        np.array([[3, 1], [0, 2]], dtype=np.uint64),
        torch.tensor([[3, 1], [0, 2]], dtype=torch.int32),
        torch.tensor([[3, 1], [0, 2]], dtype=torch.uint16),
    ):
        checked = as_confusion_matrix(matrix)
        assert checked.dtype == torch.int64 and checked.device.type == "cpu"
        assert torch.equal(checked, expected)
    original = torch.tensor([[3, 1], [0, 2]])
    as_confusion_matrix(original)[0, 0] = 99
    assert int(original[0, 0]) == 3


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        ([[1, 2, 3], [4, 5, 6]], "square, got shape \\(2, 3\\)"),
        ([1, 2], "square, got shape \\(2,\\)"),
        (None, "square"),
        (np.zeros((0, 0), dtype=np.int64), "at least one class"),
        (torch.eye(2), "integer counts, got dtype torch.float32"),
        (torch.eye(2, dtype=torch.bfloat16), "integer counts"),
        (torch.eye(2, dtype=torch.bool), "integer counts"),
        (np.eye(2, dtype=bool), "integer counts"),
        (np.array([[1, 2], [3, 4]], dtype=object), "integer counts"),
        ([[1, -1], [0, 1]], "negative"),
        (torch.tensor([[1, 0], [0, -2]]), "negative"),
        (np.array([[2**64 - 1, 0], [0, 1]], dtype=np.uint64), "below 2\\*\\*63"),
    ],
)
def test_the_confusion_check_refuses(matrix: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        as_confusion_matrix(matrix)  # type: ignore[arg-type]
