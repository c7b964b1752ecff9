import math

import numpy as np
import pytest

from pyscoring import evaluation


@pytest.mark.parametrize(
    "labels, scores, expected",
    [
        # Every positive above every negative.
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        # Every positive below every negative.
        ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),
        # Pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, 0.1) win,
        # (0.8, 0.4) win, so 3 of 4.
        ([0, 1, 0, 1], [0.1, 0.35, 0.4, 0.8], 0.75),
        # All scores tied: every pair counts one half.
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
        # Pairs: (0.5, 0.5) tie = 0.5, (0.5, 0.2) win, (0.9, 0.5) win,
        # (0.9, 0.2) win, so 3.5 of 4.
        ([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2], 0.875),
        # Two positives at 0.3 tie with one of three negatives at 0.3:
        # each positive beats 0.1, ties 0.3, loses to 0.7, so 2 * 1.5 of 6.
        ([1, 1, 0, 0, 0], [0.3, 0.3, 0.1, 0.3, 0.7], 0.5),
    ],
)
def test_roc_auc_hand_computed(labels, scores, expected):
    assert evaluation.roc_auc(labels, scores) == pytest.approx(expected)


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=300)
    # Rounding creates many ties.
    scores = np.round(rng.random(300) + 0.3 * labels, 1)

    positive = scores[labels == 1][:, None]
    negative = scores[labels == 0][None, :]
    expected = ((positive > negative) + 0.5 * (positive == negative)).mean()

    assert evaluation.roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_invariant_to_monotone_transform():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=200)
    scores = rng.normal(size=200) + labels
    assert evaluation.roc_auc(labels, scores) == pytest.approx(
        evaluation.roc_auc(labels, 1 / (1 + np.exp(-scores)))
    )


def test_roc_auc_rejects_single_class():
    with pytest.raises(ValueError, match="needs both classes"):
        evaluation.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    "labels, scores, fragment",
    [
        ([0, 1], [0.1], "differ in length"),
        ([0, 2], [0.1, 0.2], "labels must be 0 or 1"),
        ([0, 1], [0.1, math.nan], "scores must be finite"),
        ([], [], "empty"),
        ([[0, 1]], [[0.1, 0.2]], "must be 1-D"),
    ],
)
def test_roc_auc_rejects_invalid_input(labels, scores, fragment):
    with pytest.raises(ValueError, match=fragment):
        evaluation.roc_auc(labels, scores)


def test_accuracy_threshold():
    labels = [0, 1, 1, 0]
    probabilities = [0.2, 0.5, 0.49, 0.7]
    # 0.5 counts as positive, so rows 0 and 1 are right.
    assert evaluation.accuracy(labels, probabilities) == 0.5
    assert evaluation.accuracy(labels, probabilities, threshold=0.45) == 0.75


def test_log_loss_from_logits_matches_formula():
    labels = np.array([0, 1, 1, 0])
    logits = np.array([-2.0, 0.5, 3.0, 1.0])
    probability = 1 / (1 + np.exp(-logits))
    expected = -np.mean(labels * np.log(probability) + (1 - labels) * np.log(1 - probability))
    assert evaluation.log_loss_from_logits(labels, logits) == pytest.approx(expected, rel=1e-12)


def test_log_loss_from_logits_large_logits():
    loss = evaluation.log_loss_from_logits([1, 0, 0], [1000.0, -1000.0, 1000.0])
    # Only the last row is wrong, with loss 1000.
    assert loss == pytest.approx(1000.0 / 3)
