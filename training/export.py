"""Versioned, atomic SavedModel export in TensorFlow Serving's `<name>/<version>/` layout.

A version folder appears only by a rename of a finished staging folder, so a server that
scans the models folder can never pick up a half-written version.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training import TrainingError

CARD_FILE = "model_card.json"
GOLDEN_FILE = "golden.json"
EXTRA_DIR = "assets.extra"
STAGING_PREFIX = ".staging-"


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())


def prepare_model_dir(output_dir: Path, name: str) -> Path:
    """Create `output_dir/name` and prove it is writable before any training time is spent."""
    model_dir = output_dir / name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        probe = model_dir / f"{STAGING_PREFIX}probe-{uuid.uuid4().hex}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise TrainingError(f"{model_dir}: output folder is not writable ({exc.strerror})") from None
    return model_dir


@contextlib.contextmanager
def staging_folder(model_dir: Path) -> Iterator[Path]:
    """A hidden folder beside the versions, removed unless it was published."""
    staging = model_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def next_version(model_dir: Path) -> int:
    return (existing_versions(model_dir) or [0])[-1] + 1


def publish(staging: Path, model_dir: Path, version: int) -> Path:
    """Rename the finished staging folder to `version`; never overwrite an existing one."""
    target = model_dir / str(version)
    try:
        # mkdir claims the number atomically; rename onto the empty folder then fills it.
        target.mkdir()
    except FileExistsError:
        raise TrainingError(f"{target}: version already exists (another export running?)") from None
    try:
        os.rename(staging, target)
    except OSError as exc:
        target.rmdir()
        raise TrainingError(f"{target}: could not publish ({exc.strerror})") from None
    return target


def export_saved_model(model: Any, input_name: str, output_name: str, task: str, path: Path) -> None:
    """Write `model` as a SavedModel whose signatures name their inputs and outputs.

    Keras 3's `model.export` names them `inputs`/`output_0`; its ExportArchive (what
    `model.export` uses inside) lets the signature say `image` and `probabilities`.
    """
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=input_name)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        return {output_name: model(tensor, training=False)}

    archive.add_endpoint("serving_default", tf.function(serve, input_signature=[spec]))
    if task == "classification":
        def top_class(tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            probabilities = model(tensor, training=False)
            return {
                "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
                "probability": tf.reduce_max(probabilities, axis=-1),
            }

        archive.add_endpoint("top_class", tf.function(top_class, input_signature=[spec]))
    archive.write_out(str(path), verbose=False)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
