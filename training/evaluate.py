"""Test-set metrics computed with numpy from the outputs of the exported signature."""

from __future__ import annotations

from typing import Any

import numpy as np

# Keras clips probabilities the same way before taking the log.
_EPSILON = 1e-7


def classification_report(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, per-class precision/recall/F1 and the confusion matrix."""
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], _EPSILON, 1.0)
    per_class = []
    for index, name in enumerate(class_names):
        true_positive = int(confusion[index, index])
        predicted_count = int(confusion[:, index].sum())
        support = int(confusion[index, :].sum())
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({
            "class": name, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "support": support,
        })
    return {
        "test_samples": len(labels),
        "accuracy": round(float((predicted == labels).mean()), 4),
        "loss": round(float(-np.log(picked).mean()), 4),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def regression_report(predictions: np.ndarray, targets: np.ndarray, inputs: np.ndarray) -> dict[str, Any]:
    """Mean squared and absolute error, and each test point with its prediction."""
    error = predictions.reshape(-1) - targets.reshape(-1)
    return {
        "test_samples": len(targets),
        "loss": round(float((error**2).mean()), 6),
        "mean_absolute_error": round(float(np.abs(error).mean()), 6),
        "predictions": [
            {"x": float(x), "expected": float(t), "predicted": round(float(p), 4)}
            for x, t, p in zip(inputs.reshape(-1), targets.reshape(-1), predictions.reshape(-1), strict=True)
        ],
    }
