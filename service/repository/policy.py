"""Which versions of each model to serve, and the labels that name versions.

An optional JSON or YAML file (Config.model_config) sets them per model; a model it does not
mention serves its latest version and has no labels, like TensorFlow Serving's default. The
file is read again whenever it changes (PolicyFile).

    models:
      fashion_mnist:
        version_policy: {latest: 2}        # or: all, or {specific: [1, 3]}
        labels: {stable: 1, canary: 2}

TensorFlow Serving's spellings are accepted too: `{latest: {num_versions: 2}}`, `{all: {}}`,
`{specific: {versions: [1, 3]}}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from service.repository.source import is_valid_name

log = logging.getLogger(__name__)

PolicyKind = Literal["latest", "all", "specific"]
_MODEL_KEYS = {"version_policy", "labels"}


@dataclass(frozen=True)
class VersionPolicy:
    kind: PolicyKind = "latest"
    num_versions: int = 1                          # for "latest"
    versions: frozenset[int] = frozenset()         # for "specific"

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve out of `available`, sorted."""
        ordered = sorted(set(available))
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions:]

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "specific":
            return "specific " + ", ".join(str(v) for v in sorted(self.versions))
        return "all"


@dataclass(frozen=True)
class ModelPolicy:
    version_policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ModelPolicies:
    models: Mapping[str, ModelPolicy] = field(default_factory=lambda: MappingProxyType({}))
    default: ModelPolicy = ModelPolicy()

    def for_model(self, name: str) -> ModelPolicy:
        return self.models.get(name, self.default)

    def select(self, name: str, available: Iterable[int]) -> list[int]:
        """The versions of model `name` to serve out of those `available`, sorted."""
        return self.for_model(name).version_policy.select(available)

    def labels(self, name: str) -> dict[str, int]:
        return dict(self.for_model(name).labels)


class PolicyFile:
    """The model config file, for a manager to read again whenever it has changed.

    Like TensorFlow Serving's --model_config_file_poll_wait_seconds, the manager asks at every
    refresh. The contents are compared, not the modification time, whose granularity can hide
    two quick edits. A file that stops parsing, or disappears, is logged and the policies read
    last stay: a typo in the file must not unload the models.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._seen = self._contents()
        self.policies = load_policies(self.path)   # a bad file at start-up stops the start

    def reload(self) -> None:
        """Read the file again into `policies` if it changed since it was last read and still parses."""
        contents = self._contents()
        if contents == self._seen:
            return
        self._seen = contents
        try:
            self.policies = load_policies(self.path)
        except ValueError as exc:
            log.error("%s; keeping the version policies and labels read before", exc)
            return
        log.info("model config file %s changed: version policies and labels read again", self.path)

    def _contents(self) -> bytes | None:
        if self.path is None:
            return None
        try:
            return self.path.read_bytes()
        except OSError:
            return None


def load_policies(path: Path | None) -> ModelPolicies:
    """Read the model config file; no file means defaults for every model.

    Raises ValueError naming the file and the offending entry when the file is wrong.
    """
    if path is None:
        return ModelPolicies()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"model config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"model config file {str(path)!r} cannot be read: {exc}") from None
    try:
        document = _parse(path, text)
        return parse_policies(document)
    except ValueError as exc:
        raise ValueError(f"model config file {str(path)!r}: {exc}") from None


def parse_policies(document: Any) -> ModelPolicies:
    """Build the policies from an already parsed document (see the module docstring)."""
    if document is None:
        return ModelPolicies()
    if not isinstance(document, dict):
        raise ValueError("expected a mapping with a 'models' key at the top")
    unknown = set(document) - {"models"}
    if unknown:
        raise ValueError(f"unknown top-level key(s) {_names(unknown)}; expected 'models'")
    models = document.get("models") or {}
    if not isinstance(models, dict):
        raise ValueError("'models' must map model names to their settings")
    policies: dict[str, ModelPolicy] = {}
    for name, settings in models.items():
        if not isinstance(name, str) or not is_valid_name(name):
            raise ValueError(f"model name {name!r} is not a valid folder name "
                             "(letters, digits, '_', '-', '.', not starting with '.')")
        policies[name] = _model_policy(name, settings)
    return ModelPolicies(models=MappingProxyType(policies))


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ValueError(f"invalid YAML{where}: {problem}") from None
    raise ValueError(f"unsupported extension {suffix or '(none)'!r}; use .json, .yaml or .yml")


def _model_policy(name: str, settings: Any) -> ModelPolicy:
    if settings is None:
        return ModelPolicy()
    if not isinstance(settings, dict):
        raise ValueError(f"model {name!r}: expected a mapping with 'version_policy' and/or 'labels'")
    unknown = set(settings) - _MODEL_KEYS
    if unknown:
        raise ValueError(f"model {name!r}: unknown key(s) {_names(unknown)}; expected 'version_policy', 'labels'")
    policy = _version_policy(name, settings.get("version_policy"))
    labels = _labels(name, settings.get("labels"))
    return ModelPolicy(version_policy=policy, labels=MappingProxyType(labels))


def _version_policy(name: str, raw: Any) -> VersionPolicy:
    where = f"model {name!r}: version_policy"
    if raw is None:
        return VersionPolicy()
    if raw == "all":
        return VersionPolicy("all")
    if raw == "latest":
        return VersionPolicy("latest", 1)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(f"{where} must be 'all', {{latest: N}} or {{specific: [versions]}}, not {raw!r}")
    ((kind, value),) = raw.items()
    if kind == "all":
        if value not in (None, {}, True):
            raise ValueError(f"{where}: 'all' takes no value, got {value!r}")
        return VersionPolicy("all")
    if kind == "latest":
        if isinstance(value, dict) and set(value) == {"num_versions"}:
            value = value["num_versions"]
        return VersionPolicy("latest", _positive_int(value, f"{where}: latest"))
    if kind == "specific":
        if isinstance(value, dict) and set(value) == {"versions"}:
            value = value["versions"]
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: specific must be a non-empty list of versions, not {value!r}")
        versions = frozenset(_positive_int(v, f"{where}: specific version") for v in value)
        return VersionPolicy("specific", versions=versions)
    raise ValueError(f"{where}: unknown policy {kind!r}; expected 'latest', 'all' or 'specific'")


def _labels(name: str, raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"model {name!r}: labels must map label names to versions, not {raw!r}")
    labels: dict[str, int] = {}
    for label, version in raw.items():
        # A label made of digits would read like a version number in URLs and logs.
        if not isinstance(label, str) or not is_valid_name(label) or label.isdigit():
            raise ValueError(f"model {name!r}: label {label!r} must be a name (letters, digits, '_', '-', '.'), "
                             "not a number")
        labels[label] = _positive_int(version, f"model {name!r}: label {label!r}")
    return labels


def _positive_int(value: Any, where: str) -> int:
    # bool is an int in Python; `latest: true` is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where} must be a positive integer, not {value!r}")
    return value


def _names(keys: Iterable[Any]) -> str:
    return ", ".join(repr(k) for k in sorted(keys, key=str))
