"""PNG plots for the model card: what a person looks at before trusting a number."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI
import matplotlib.pyplot as plt
import numpy as np


def plot_confusion_matrix(confusion: list[list[int]], class_names: list[str], path: Path) -> None:
    matrix = np.asarray(confusion)
    size = max(4.0, 0.6 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > threshold else "black", fontsize=8)
    fig.colorbar(image, ax=ax)
    ax.set_title("Confusion matrix (test set)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training_curves(history: dict[str, list[float]], path: Path) -> None:
    metrics = [name for name in ("loss", "accuracy") if name in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, name in zip(axes[0], metrics, strict=True):
        values = history[name]
        ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) <= 20 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"Training {name}")
        ax.grid(True, alpha=0.3)
    if metrics[0] == "loss" and min(history["loss"]) > 0:
        axes[0][0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
