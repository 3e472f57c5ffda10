"""One training run: data, fit, export to staging, evaluate the export, write its card, publish."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training import TrainingError
from training.augment import Augmentation, training_dataset
from training.datasets import Dataset
from training.evaluate import classification_report, regression_report
from training.export import (
    CARD_FILE,
    EXTRA_DIR,
    GOLDEN_FILE,
    export_saved_model,
    next_version,
    prepare_model_dir,
    publish,
    staging_folder,
    write_json,
)
from training.plots import plot_confusion_matrix, plot_training_curves
from training.recipes import Hyperparameters, Recipe

GOLDEN_ATOL = 1e-5
LINEAR_GOLDEN_X = (-1.0, 0.0, 10.0)


def train(
    recipe: Recipe,
    hp: Hyperparameters,
    data_dir: Path | None,
    output_dir: Path,
    train_limit: int | None = None,
    test_limit: int | None = None,
    verbose: int = 2,
    augmentation: Augmentation | None = None,
) -> Path:
    """Train `recipe`, export it as the next version under `output_dir` and return its folder.

    `augmentation` defaults to the recipe's; `Augmentation()` trains on the images as they are.
    """
    augmentation = recipe.augmentation if augmentation is None else augmentation
    model_dir = prepare_model_dir(output_dir, recipe.name)
    data = recipe.load(data_dir, hp).limited(train_limit, test_limit)
    if len(data.x_train) == 0 or len(data.x_test) == 0:
        raise TrainingError("no training or test samples left after the limits")

    # Imported only once the folder and the data are known good: importing TensorFlow writes
    # C++ log lines to stderr that TF_CPP_MIN_LOG_LEVEL does not silence, which would bury
    # the one-line "error: ..." of a bad option under noise.
    import keras

    keras.utils.set_random_seed(hp.seed)
    model = recipe.build(data, hp)
    steps_per_epoch = -(-len(data.x_train) // hp.batch_size)
    learning_rate: Any = hp.learning_rate
    if recipe.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(hp.learning_rate, steps_per_epoch * hp.epochs)
    optimizer = keras.optimizers.get({"class_name": recipe.optimizer, "config": {"learning_rate": learning_rate}})
    metrics = ["accuracy"] if recipe.task == "classification" else []
    model.compile(optimizer=optimizer, loss=recipe.loss, metrics=metrics)
    started = time.perf_counter()
    if augmentation.active:
        batches, steps_per_epoch = training_dataset(data.x_train, data.y_train, augmentation, hp.batch_size,
                                                    hp.epochs, hp.seed)
        history = model.fit(batches, epochs=hp.epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
                            shuffle=False)   # shuffled by the data set, per epoch and seed
    else:
        history = model.fit(
            data.x_train.astype(np.float32), data.y_train,
            epochs=hp.epochs, batch_size=hp.batch_size, verbose=verbose,
        )
    train_seconds = time.perf_counter() - started

    version = next_version(model_dir)
    with staging_folder(model_dir) as staging:
        export_saved_model(model, recipe.input_name, recipe.output_name, recipe.task, staging)
        signature = _load_signature(staging)
        extra = staging / EXTRA_DIR
        extra.mkdir()
        outputs = _run(signature, data.x_test)[recipe.output_name]
        evaluation = _evaluate(recipe, data, outputs, extra, history.history)
        golden = _golden(recipe, data, signature)
        write_json(extra / GOLDEN_FILE, golden)
        card = _card(recipe, version, hp, data, evaluation, train_seconds, history.history, augmentation)
        write_json(extra / CARD_FILE, card)
        return publish(staging, model_dir, version)


def _load_signature(path: Path) -> Any:
    import tensorflow as tf

    return tf.saved_model.load(str(path)).signatures["serving_default"]


def _run(signature: Any, inputs: np.ndarray, batch: int = 1024) -> dict[str, np.ndarray]:
    import tensorflow as tf

    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(inputs), batch):
        chunk = tf.constant(inputs[start:start + batch], dtype=tf.float32)
        for key, value in signature(chunk).items():
            parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


def _evaluate(recipe: Recipe, data: Dataset, outputs: np.ndarray, extra: Path,
              history: dict[str, list[float]]) -> dict[str, Any]:
    plot_training_curves(history, extra / "training_curves.png")
    if recipe.task == "regression":
        return regression_report(outputs, data.y_test, data.x_test)
    names = [c["name"] for c in recipe.classes or []]
    report = classification_report(outputs, data.y_test, names)
    plot_confusion_matrix(report["confusion_matrix"], names, extra / "confusion_matrix.png")
    return report


def _golden(recipe: Recipe, data: Dataset, signature: Any) -> dict[str, Any]:
    """A few test inputs, one per class where there are classes, with the export's own outputs."""
    if recipe.task == "regression":
        inputs = np.array(LINEAR_GOLDEN_X, dtype=np.float32).reshape(-1, 1)
    else:
        firsts = [np.flatnonzero(data.y_test == c["index"]) for c in recipe.classes or []]
        inputs = data.x_test[[int(found[0]) for found in firsts if len(found)]].astype(np.float32)
    outputs = _run(signature, inputs)
    return {
        "signature_name": "serving_default",
        "atol": GOLDEN_ATOL,
        "inputs": {recipe.input_name: inputs.tolist()},
        "outputs": {key: value.tolist() for key, value in outputs.items()},
    }


def _card(recipe: Recipe, version: int, hp: Hyperparameters, data: Dataset, evaluation: dict[str, Any],
          train_seconds: float, history: dict[str, list[float]], augmentation: Augmentation) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    card: dict[str, Any] = {
        "card_format": 1,
        "name": recipe.name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": recipe.task,
        "description": recipe.description,
        "signature_name": "serving_default",
        "input": {"name": recipe.input_name, **recipe.input_schema},
        "output": {
            "name": recipe.output_name,
            "kind": "probabilities" if recipe.task == "classification" else "value",
            "shape": [len(recipe.classes)] if recipe.classes else [1],
        },
        "classes": recipe.classes,
        "training": {
            **asdict(hp),
            "optimizer": recipe.optimizer,
            "loss": recipe.loss,
            "architecture": recipe.architecture,
            "lr_schedule": recipe.lr_schedule,
            "augmentation": augmentation.record(),   # {}: none (training/augment.py)
            "train_samples": len(data.x_train),
            "seconds": round(train_seconds, 1),
            "final_epoch": {key: round(values[-1], 6) for key, values in history.items()},
            "machine": f"{platform.machine()}, {_cpu_count()} CPU",
        },
        "data": {"source": data.source, "sha256": data.checksums},
        "libraries": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "evaluation": evaluation,
        "plots": {"training_curves": "training_curves.png"},
        "golden_file": GOLDEN_FILE,
    }
    if recipe.task == "classification":
        card["plots"]["confusion_matrix"] = "confusion_matrix.png"
    return card


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
