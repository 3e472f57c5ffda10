"""A version's model card: read from `assets.extra/`, or made up from its signature.

Our training writes `assets.extra/model_card.json` and `assets.extra/golden.json` (see
training/train.py). Any other SavedModel with a serving signature is servable as a plain
tensor model, so a missing card is not an error; a card that is there but wrong is, because
serving a model under a card that does not describe it gives confident wrong answers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from preprocessing.card import CardPipeline, PipelineError, pipeline_for
from service.repository.servable import ModelCard, Signature, TensorSpec
from service.repository.source import parse_version

EXTRA_DIR = "assets.extra"
CARD_FILE = "model_card.json"
GOLDEN_FILE = "golden.json"
TASKS = ("classification", "regression", "tensor")
INPUT_KINDS = ("features", "image", "tensor")


class CardError(ValueError):
    """The card or golden set is there but cannot be used; the message names the file and field."""


def read_card(version_path: Path, signature: Signature, name: str | None = None,
              version: int | None = None) -> ModelCard:
    """The card of the version at `version_path`, whose default signature is `signature`.

    `name` and `version` default to the folder names; they only appear in a generated card.
    Raises CardError for a malformed card or golden set.
    """
    version_path = Path(version_path)
    extra = version_path / EXTRA_DIR
    raw = _read_json(extra / CARD_FILE, CARD_FILE)
    golden_name = GOLDEN_FILE
    if raw is not None:
        golden_name = _golden_file_name(raw)
    golden = _read_json(extra / golden_name, golden_name)
    if raw is not None and golden is None and "golden_file" in raw:
        raise CardError(f"{CARD_FILE}: golden_file {golden_name!r} is missing")
    if golden is not None:
        _check_golden(golden, golden_name)
    extra_dir = extra if extra.is_dir() else None
    if raw is None:
        return _generated(version_path, signature, name, version, golden, extra_dir)
    return _from_card(raw, signature, golden, extra_dir)


def _from_card(raw: Any, signature: Signature, golden: dict[str, Any] | None, extra_dir: Path | None) -> ModelCard:
    if not isinstance(raw, dict):
        raise CardError(f"{CARD_FILE}: expected a JSON object")
    named = raw.get("signature_name", signature.name)
    if named != signature.name:
        raise CardError(f"{CARD_FILE}: describes signature {named!r} but the default signature is {signature.name!r}")

    task = _field(raw, "task", str)
    if task not in TASKS:
        raise CardError(f"{CARD_FILE}: task {task!r} is not one of {', '.join(TASKS)}")
    input_ = _field(raw, "input", dict)
    output = _field(raw, "output", dict)
    input_name = _field(input_, "name", str, "input.name")
    output_name = _field(output, "name", str, "output.name")
    input_kind = input_.get("kind", "tensor")
    if input_kind not in INPUT_KINDS:
        raise CardError(f"{CARD_FILE}: input.kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    if input_name not in signature.inputs:
        raise CardError(f"{CARD_FILE}: input.name {input_name!r} is not an input of signature {signature.name!r} "
                        f"(it has {_keys(signature.inputs)})")
    if output_name not in signature.outputs:
        raise CardError(f"{CARD_FILE}: output.name {output_name!r} is not an output of signature "
                        f"{signature.name!r} (it has {_keys(signature.outputs)})")

    feature_names: tuple[str, ...] = ()
    if input_kind == "features":
        features = _field(input_, "features", list, "input.features")
        feature_names = tuple(_field(f, "name", str, f"input.features[{i}].name") if isinstance(f, dict)
                              else _fail(f"input.features[{i}] must be an object") for i, f in enumerate(features))
        width = signature.inputs[input_name].instance_shape
        if len(width) == 1 and width[0] is not None and width[0] != len(feature_names):
            raise CardError(f"{CARD_FILE}: input.features lists {len(feature_names)} features but input "
                            f"{input_name!r} takes {width[0]}")

    image_pipeline = _image_pipeline(input_) if input_kind == "image" else None
    class_names, class_names_es = _classes(raw.get("classes"), task)
    if class_names:
        width = signature.outputs[output_name].instance_shape
        if width and width[-1] is not None and width[-1] != len(class_names):
            raise CardError(f"{CARD_FILE}: {len(class_names)} classes but output {output_name!r} "
                            f"gives {width[-1]} values")

    return ModelCard(
        raw=raw, task=task, input_name=input_name, output_name=output_name, input_kind=input_kind,
        feature_names=feature_names, class_names=class_names, class_names_es=class_names_es,
        golden=golden, extra_dir=extra_dir, image_pipeline=image_pipeline,
    )


def _image_pipeline(input_: dict[str, Any]) -> CardPipeline:
    """Built once here: a card asking for preprocessing this server lacks must not load, not fail its uploads."""
    try:
        return pipeline_for(input_)
    except PipelineError as exc:
        raise CardError(f"{CARD_FILE}: input: {exc}") from None


def _classes(raw: Any, task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if raw is None or raw == []:
        if task == "classification":
            raise CardError(f"{CARD_FILE}: a classification card needs 'classes'")
        return (), ()
    if not isinstance(raw, list):
        raise CardError(f"{CARD_FILE}: classes must be a list")
    by_index: dict[int, dict[str, Any]] = {}
    for position, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise CardError(f"{CARD_FILE}: classes[{position}] must be an object")
        index = entry.get("index", position)
        if isinstance(index, bool) or not isinstance(index, int):
            raise CardError(f"{CARD_FILE}: classes[{position}].index must be an integer")
        _field(entry, "name", str, f"classes[{position}].name")
        by_index[index] = entry
    if sorted(by_index) != list(range(len(raw))):
        raise CardError(f"{CARD_FILE}: class indices must be 0..{len(raw) - 1}, each once")
    ordered = [by_index[i] for i in range(len(raw))]
    names = tuple(entry["name"] for entry in ordered)
    # Spanish names only when every class has one: a half-translated list would mislabel.
    names_es = tuple(entry["name_es"] for entry in ordered) \
        if all(isinstance(entry.get("name_es"), str) for entry in ordered) else ()
    return names, names_es


def _generated(version_path: Path, signature: Signature, name: str | None, version: int | None,
               golden: dict[str, Any] | None, extra_dir: Path | None) -> ModelCard:
    if not signature.inputs or not signature.outputs:
        raise CardError(f"signature {signature.name!r} has no inputs or no outputs; it cannot be served")
    input_name = sorted(signature.inputs)[0]
    output_name = sorted(signature.outputs)[0]
    name = name if name is not None else version_path.parent.name
    if version is None:
        version = parse_version(version_path.name)
    raw: dict[str, Any] = {
        "name": name,
        "version": version,
        "task": "tensor",
        "signature_name": signature.name,
        "input": _describe(signature.inputs[input_name]),
        "output": _describe(signature.outputs[output_name]),
        "card": f"generated from the {signature.name} signature",
    }
    return ModelCard(raw=raw, task="tensor", input_name=input_name, output_name=output_name,
                     input_kind="tensor", golden=golden, extra_dir=extra_dir)


def _describe(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.instance_shape)}


def _golden_file_name(raw: Any) -> str:
    if not isinstance(raw, dict):
        raise CardError(f"{CARD_FILE}: expected a JSON object")
    name = raw.get("golden_file", GOLDEN_FILE)
    # The card may only point next to itself: never let it name a path elsewhere on the disk.
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise CardError(f"{CARD_FILE}: golden_file must be a file name in {EXTRA_DIR}, not {name!r}")
    return name


def _check_golden(golden: Any, file: str) -> None:
    if not isinstance(golden, dict):
        raise CardError(f"{file}: expected a JSON object")
    signature_name = golden.get("signature_name", "serving_default")
    if not isinstance(signature_name, str):
        raise CardError(f"{file}: signature_name must be a string")
    atol = golden.get("atol", 1e-5)
    if isinstance(atol, bool) or not isinstance(atol, int | float) or not math.isfinite(atol) or atol < 0:
        raise CardError(f"{file}: atol must be a non-negative number, not {atol!r}")
    for key in ("inputs", "outputs"):
        value = golden.get(key)
        if not isinstance(value, dict) or not value:
            raise CardError(f"{file}: {key} must be a non-empty object of tensors by name")


def _read_json(path: Path, label: str) -> Any:
    """The parsed file, or None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"{label}: cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"{label}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _field(mapping: dict[str, Any], key: str, kind: type, label: str | None = None) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind) or (kind is str and not value):
        wanted = {str: "a non-empty string", dict: "an object", list: "a list"}.get(kind, kind.__name__)
        raise CardError(f"{CARD_FILE}: {label or key} must be {wanted}")
    return value


def _fail(message: str) -> Any:
    raise CardError(f"{CARD_FILE}: {message}")


def _keys(specs: dict[str, TensorSpec]) -> str:
    return ", ".join(repr(k) for k in sorted(specs))
