"""Binary classification metrics computed with numpy."""

from __future__ import annotations

import numpy as np


def _validate(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}"
        )
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores differ in length: {labels.shape[0]} and {scores.shape[0]}"
        )
    if labels.size == 0:
        raise ValueError("labels and scores are empty")
    invalid = ~np.isin(labels, (0, 1))
    if invalid.any():
        raise ValueError(
            f"labels must be 0 or 1, found {labels[invalid][0]!r} at index "
            f"{int(np.flatnonzero(invalid)[0])}"
        )
    if not np.isfinite(scores).all():
        index = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"scores must be finite, found {scores[index]} at index {index}")
    return labels.astype(bool), scores


def roc_auc(labels, scores) -> float:
    """Compute the area under the ROC curve from 0/1 labels and scores.

    Uses the Mann-Whitney rank statistic: the probability that a random
    positive scores higher than a random negative, where a tie counts as one
    half. Tied scores get the average of their ranks. Raises ValueError when
    labels contain only one class, because the AUC is then undefined.
    """
    positive, scores = _validate(labels, scores)
    num_positive = int(positive.sum())
    num_negative = positive.size - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError(
            f"roc_auc needs both classes, got {num_positive} positive and "
            f"{num_negative} negative labels"
        )

    # Average 1-based ranks: every score in a group of ties gets the mean of
    # the ranks the group spans.
    unique_scores, inverse, counts = np.unique(
        scores, return_inverse=True, return_counts=True
    )
    del unique_scores
    group_end = np.cumsum(counts)
    group_average_rank = group_end - (counts - 1) / 2.0
    ranks = group_average_rank[inverse]

    positive_rank_sum = ranks[positive].sum()
    u_statistic = positive_rank_sum - num_positive * (num_positive + 1) / 2.0
    return float(u_statistic / (num_positive * num_negative))


def accuracy(labels, probabilities, threshold: float = 0.5) -> float:
    """Return the fraction of rows where (probability >= threshold) equals the label."""
    positive, probabilities = _validate(labels, probabilities)
    predicted = probabilities >= threshold
    return float(np.mean(predicted == positive))


def log_loss_from_logits(labels, logits) -> float:
    """Return the mean sigmoid cross-entropy of logits against 0/1 labels.

    Uses max(x, 0) - x * y + log(1 + exp(-|x|)), which does not overflow for
    large |x|.
    """
    positive, logits = _validate(labels, logits)
    y = positive.astype(np.float64)
    losses = np.maximum(logits, 0.0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    return float(np.mean(losses))


def binary_metrics(labels, probabilities, logits) -> dict[str, float]:
    """Return ROC AUC, accuracy at 0.5 and mean log loss as "auc", "accuracy" and "loss".

    These are the metrics that exports record in the manifest's
    `training.metrics`.
    """
    return {
        "auc": roc_auc(labels, probabilities),
        "accuracy": accuracy(labels, probabilities),
        "loss": log_loss_from_logits(labels, logits),
    }
