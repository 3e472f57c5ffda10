"""The source: which model versions are on disk and ready to load.

Layout is TensorFlow Serving's `<base>/<model>/<version>/` with a SavedModel in each version
folder. A version is only offered once it is complete (`saved_model.pb` and `variables/`) and
has settled, so a copy still in progress is never loaded half-written (TensorFlow Serving's
long-standing pitfall with `cp -r` into a watched folder).

Nothing here imports TensorFlow: gunicorn's master process imports this module too.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

log = logging.getLogger(__name__)

# Letters, digits, `_`, `-`, `.`; a leading dot would let `.staging-*` and `..` in.
_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")
# Leading zeros are refused so that `1` and `01` can never be two folders of one version.
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")
VARIABLES_DIR = "variables"

# What a version folder looks like on disk: (relative path, size, mtime in ns) of every entry.
Fingerprint = tuple[tuple[str, int, int], ...]


def is_valid_name(name: str) -> bool:
    """Whether `name` may be a model name (and so a folder name and a URL segment)."""
    return _NAME.fullmatch(name) is not None


def parse_version(name: str) -> int | None:
    """The version a folder name stands for, or None when it is not a version folder."""
    return int(name) if _VERSION.fullmatch(name) else None


@dataclass(frozen=True)
class ModelOnDisk:
    name: str
    path: Path
    readable: bool = True                               # False: the model folder could not be listed
    present: frozenset[int] = frozenset()               # every version folder, finished or not
    complete: Mapping[int, Fingerprint] = field(default_factory=lambda: MappingProxyType({}))

    def versions(self) -> list[int]:
        return sorted(self.complete)


@dataclass(frozen=True)
class ScanResult:
    readable: bool                                      # False: the base folder itself could not be listed
    models: Mapping[str, ModelOnDisk]

    def versions(self) -> dict[str, list[int]]:
        """Model name -> sorted loadable versions, for readable models with at least one."""
        return {
            name: model.versions()
            for name, model in sorted(self.models.items())
            if model.readable and model.complete
        }


class ModelSource:
    """Scans a base folder; keeps what it saw last time to judge stability and quiet repeated warnings.

    A version is settled when nothing in it changed for `settle_seconds` by the clock, or when its
    fingerprint is unchanged since a scan at least `settle_seconds` ago (which also covers files
    stamped in the future by a skewed clock or a copy that preserved odd times).
    """

    def __init__(self, base_path: Path, settle_seconds: float = 1.0) -> None:
        self.base_path = Path(base_path)
        self.settle_seconds = settle_seconds
        self._seen: dict[tuple[str, int], tuple[Fingerprint, float]] = {}
        self._problems: set[str] = set()

    def scan(self) -> ScanResult:
        now = time.time()
        problems: set[str] = set()
        seen: dict[tuple[str, int], tuple[Fingerprint, float]] = {}
        try:
            entries = sorted(os.scandir(self.base_path), key=lambda e: e.name)
        except OSError as exc:
            problems.add(f"model base path {str(self.base_path)!r} cannot be read ({_reason(exc)})")
            self._report(problems)
            return ScanResult(readable=False, models=MappingProxyType({}))

        models: dict[str, ModelOnDisk] = {}
        for entry in entries:
            if not is_valid_name(entry.name) or not _is_dir(entry):
                continue
            models[entry.name] = self._scan_model(entry.name, Path(entry.path), now, seen, problems)
        self._seen = seen
        self._report(problems)
        return ScanResult(readable=True, models=MappingProxyType(models))

    def _scan_model(self, name: str, path: Path, now: float,
                    seen: dict[tuple[str, int], tuple[Fingerprint, float]], problems: set[str]) -> ModelOnDisk:
        try:
            entries = list(os.scandir(path))
        except OSError as exc:
            problems.add(f"model {name!r}: folder cannot be read ({_reason(exc)}); keeping what is loaded")
            return ModelOnDisk(name, path, readable=False)

        present: set[int] = set()
        complete: dict[int, Fingerprint] = {}
        for entry in entries:
            version = parse_version(entry.name)
            if version is None or not _is_dir(entry):
                continue
            present.add(version)
            try:
                fingerprint, newest = _inspect(Path(entry.path))
            except FileNotFoundError:
                continue  # something was removed while we looked: it is changing, look again next time
            except OSError as exc:
                problems.add(f"model {name!r} version {version}: folder cannot be read ({_reason(exc)})")
                continue
            if fingerprint is None:
                continue  # not a finished SavedModel (yet); an export in progress is normal
            key = (name, version)
            first_seen = now
            previous = self._seen.get(key)
            if previous is not None and previous[0] == fingerprint:
                first_seen = previous[1]
            seen[key] = (fingerprint, first_seen)
            if now - newest >= self.settle_seconds or now - first_seen >= self.settle_seconds:
                complete[version] = fingerprint
        return ModelOnDisk(name, path, readable=True, present=frozenset(present),
                           complete=MappingProxyType(complete))

    def _report(self, problems: set[str]) -> None:
        # Polling runs every few seconds: say each problem once, and again only after it went away.
        for message in sorted(problems - self._problems):
            log.warning("%s", message)
        self._problems = problems


def _inspect(version_path: Path) -> tuple[Fingerprint | None, float]:
    """The fingerprint and newest mtime of a finished SavedModel folder; (None, 0) if unfinished.

    Raises OSError when the folder or something inside it cannot be read.
    """
    names = set(os.listdir(version_path))
    if not any(graph in names and (version_path / graph).is_file() for graph in GRAPH_FILES):
        return None, 0.0
    if VARIABLES_DIR not in names or not (version_path / VARIABLES_DIR).is_dir():
        return None, 0.0

    errors: list[OSError] = []
    items: list[tuple[str, int, int]] = []
    root_stat = version_path.stat()
    newest = root_stat.st_mtime
    items.append((".", 0, root_stat.st_mtime_ns))
    for folder, dirs, files in os.walk(version_path, onerror=errors.append):
        relative = os.path.relpath(folder, version_path)
        for entry in (*dirs, *files):
            st = os.stat(os.path.join(folder, entry))
            newest = max(newest, st.st_mtime)
            size = 0 if entry in dirs else st.st_size
            items.append((os.path.join(relative, entry), size, st.st_mtime_ns))
    if errors:
        raise errors[0]
    return tuple(sorted(items)), newest


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, as deployments often link versions in
    except OSError:
        return False


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
