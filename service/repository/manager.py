"""The manager: applies the version policy to what the source finds and hands out loaded versions.

One thread refreshes (at start-up, then the watcher); many request threads read. Readers never
take a lock: every change builds a new immutable snapshot and swaps it in with one assignment,
so a reader sees either the old or the new state of a model, never half of a change.

Unloading is explicit: once a version is out of the snapshot, the manager marks it unloaded
(`Servable.unload()`), tells every unload listener (the Batcher closes its lanes), then collects
the garbage and trims the heap. A request that already holds the Servable keeps using it; its
memory goes when the last such request is done.

Availability comes first, as in TensorFlow Serving's availability-preserving policy: a new
version is loaded before the one it replaces is dropped, and a version that fails to load is
treated as if it were not there, so the last good version keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from service.errors import InvalidInput, NotFound, Unavailable
from service.repository.loader import LoadError, load_servable, scrub
from service.repository.policy import ModelPolicies, PolicyFile
from service.repository.servable import Servable
from service.repository.source import Fingerprint, ModelOnDisk, ModelSource
from service.runtime import reclaim_memory

log = logging.getLogger(__name__)

# TensorFlow Serving's version states (ModelVersionStatus.State), as its status API spells them.
# TensorFlow Serving also names START and UNLOADING; a version here is never seen in either.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"
STATES = (LOADING, AVAILABLE, END)

Loader = Callable[[str, int, Path], Servable]
# Told about every load attempt: (model, version, seconds, error message or None). How the
# server turns loads into metrics without this package knowing about Prometheus.
LoadObserver = Callable[[str, int, float, str | None], None]
# Told (model, version) when a version has been unloaded, to let go of anything it holds of it.
UnloadListener = Callable[[str, int], None]


@dataclass(frozen=True)
class VersionState:
    version: int
    state: str                      # one of STATES
    error: str | None = None        # why it ended, when it ended by failing


@dataclass(frozen=True)
class _Model:
    """One model as readers see it; replaced whole, never changed."""

    servables: Mapping[int, Servable] = field(default_factory=lambda: MappingProxyType({}))
    states: Mapping[int, VersionState] = field(default_factory=lambda: MappingProxyType({}))
    labels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


class ModelManager:
    def __init__(self, base_path: Path, policies: ModelPolicies | PolicyFile | None = None,
                 loader: Loader = load_servable, settle_seconds: float = 1.0,
                 observer: LoadObserver | None = None) -> None:
        """`policies`: fixed, or a file read again at each refresh when it has changed."""
        self.base_path = Path(base_path)
        self._policy_file = policies if isinstance(policies, PolicyFile) else None
        self._policies = (self._policy_file.policies if self._policy_file is not None
                          else policies or ModelPolicies())
        self._loader = loader
        self._observer = observer
        self._source = ModelSource(self.base_path, settle_seconds)
        self._snapshot: Mapping[str, _Model] = MappingProxyType({})
        self._refresh_lock = threading.Lock()
        # Touched only under _refresh_lock.
        self._failed: dict[tuple[str, int], tuple[Fingerprint, str]] = {}
        self._ended: set[tuple[str, int]] = set()     # unloaded by policy while still on disk
        self._unload_listeners: list[UnloadListener] = []

    def add_unload_listener(self, listener: UnloadListener) -> None:
        """Call `listener(name, version)` after each version is unloaded, in the refreshing thread."""
        with self._refresh_lock:
            self._unload_listeners.append(listener)

    # ----------------------------------------------------------------- refresh (one writer)

    def refresh(self) -> None:
        """Rescan the disk, load what the policy wants, unload what it no longer wants. Never raises."""
        with self._refresh_lock:
            if self._policy_file is not None:
                self._policy_file.reload()
                self._policies = self._policy_file.policies
            try:
                result = self._source.scan()
            except Exception:
                log.exception("scanning %s failed; keeping the loaded models", self.base_path)
                return
            if not result.readable:
                return  # the source said why; a base folder that blinked must not unload everything
            unloaded = False
            for name in sorted(set(self._snapshot) | set(result.models)):
                try:
                    unloaded |= self._refresh_model(name, result.models.get(name))
                except Exception:
                    log.exception("model %r: refresh failed; keeping what is loaded", name)
            if unloaded:
                reclaim_memory()  # here, where no local of _refresh_model holds an unloaded version

    def _refresh_model(self, name: str, disk: ModelOnDisk | None) -> bool:
        """Bring one model in line with the disk and the policy; True if a version was unloaded."""
        current = self._snapshot.get(name, _Model())
        if disk is not None and not disk.readable:
            return False
        present = disk.present if disk is not None else frozenset()
        complete = disk.complete if disk is not None else {}
        loaded = dict(current.servables)

        for key in [k for k in self._failed if k[0] == name]:
            fingerprint = complete.get(key[1])
            if key[1] not in present or (fingerprint is not None and fingerprint != self._failed[key][0]):
                del self._failed[key]  # gone, or changed on disk: worth another try
        self._ended = {k for k in self._ended if k[0] != name or k[1] in present}
        failed = {v for (m, v) in self._failed if m == name}

        # A loaded version stays a candidate while its folder exists, even if it is being touched.
        candidates = (set(complete) | (set(loaded) & present)) - failed
        policy = self._policies
        while True:
            wanted = set(policy.select(name, candidates))
            to_load = sorted(wanted - set(loaded), reverse=True)
            if not to_load:
                break
            for version in to_load:
                self._publish(name, loaded, {version: VersionState(version, LOADING)})
                servable = self._load(name, version, disk, complete[version])
                if servable is None:
                    candidates.discard(version)  # next round may fall back to an older version
                else:
                    loaded[version] = servable
                    self._ended.discard((name, version))

        leaving = [loaded.pop(version) for version in sorted(set(loaded) - wanted)]
        for servable in leaving:
            if servable.version in present:
                self._ended.add((name, servable.version))
        self._publish(name, loaded)  # first out of the snapshot, so no new request gets what is unloaded
        for servable in leaving:
            self._unload(servable)
            if servable.version in present:
                log.info("model %r version %d unloaded (version policy: %s)", name, servable.version,
                         policy.for_model(name).version_policy.describe())
            else:
                log.info("model %r version %d unloaded (its folder was removed)", name, servable.version)
        return bool(leaving)

    def _unload(self, servable: Servable) -> None:
        servable.unload()
        for listener in self._unload_listeners:
            try:
                listener(servable.name, servable.version)
            except Exception:
                log.exception("unload listener failed; unloading goes on")  # one holder must not keep the rest

    def _load(self, name: str, version: int, disk: ModelOnDisk | None, fingerprint: Fingerprint) -> Servable | None:
        assert disk is not None  # only versions found complete on disk are ever loaded
        path = disk.path / str(version)
        started = time.perf_counter()
        try:
            servable = self._loader(name, version, path)
        except Exception as exc:
            message = exc.message if isinstance(exc, LoadError) else \
                f"model {name!r} version {version}: {type(exc).__name__}: {scrub(exc, path, name, version)}"
            self._failed[(name, version)] = (fingerprint, message)
            log.error("load failed, not retried until the folder changes: %s", message)
            self._observe(name, version, time.perf_counter() - started, message)
            return None
        log.info("model %r version %d loaded in %.2f s", name, version, servable.loaded_seconds)
        # The loader's own time leaves TensorFlow's first import out; fall back to ours without it.
        self._observe(name, version, servable.loaded_seconds or time.perf_counter() - started, None)
        return servable

    def _observe(self, name: str, version: int, seconds: float, error: str | None) -> None:
        if self._observer is None:
            return
        try:
            self._observer(name, version, seconds, error)
        except Exception:
            log.exception("load observer failed; loading goes on")  # metrics must never stop a model load

    def _publish(self, name: str, loaded: dict[int, Servable],
                 extra: dict[int, VersionState] | None = None) -> None:
        states: dict[int, VersionState] = {v: VersionState(v, END) for (m, v) in self._ended if m == name}
        states.update({v: VersionState(v, END, error) for (m, v), (_, error) in self._failed.items() if m == name})
        states.update({v: VersionState(v, AVAILABLE) for v in loaded})
        states.update(extra or {})
        snapshot = dict(self._snapshot)
        if states:
            snapshot[name] = _Model(
                servables=MappingProxyType(dict(loaded)),
                states=MappingProxyType(dict(sorted(states.items()))),
                labels=MappingProxyType(self._policies.labels(name)),
            )
        else:
            snapshot.pop(name, None)
        self._snapshot = MappingProxyType(snapshot)  # one assignment: readers see old or new, whole

    # ----------------------------------------------------------------- reads (lock-free)

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The loaded version asked for: by number, by label, or else the highest available.

        Raises NotFound for an unknown model, version or label (saying what exists), Unavailable
        while the model's only versions are still loading, InvalidInput for both version and label.
        """
        model = self._model(name)
        if version is not None and label is not None:
            raise InvalidInput("give a model version or a version label, not both")
        if label is not None:
            if label not in model.labels:
                known = _listing(sorted(model.labels), "labels")
                raise NotFound(f"model {name!r} has no version label {label!r}; {known}")
            version = model.labels[label]
            if version not in model.servables:
                raise NotFound(f"version label {label!r} of model {name!r} points to version {version}, "
                               f"which is not loaded; {_listing(sorted(model.servables), 'loaded versions')}")
        if version is not None:
            servable = model.servables.get(version)
            if servable is None:
                state = model.states.get(version)
                why = f" (it is {state.state}{', failed to load' if state.error else ''})" if state else ""
                raise NotFound(f"model {name!r} has no version {version} available{why}; "
                               f"{_listing(sorted(model.servables), 'available versions')}")
            return servable
        if not model.servables:
            if any(s.state == LOADING for s in model.states.values()):
                raise Unavailable(f"model {name!r} is loading; try again shortly")
            raise NotFound(f"model {name!r} has no available version; every version found failed to load")
        return model.servables[max(model.servables)]

    def model_names(self) -> list[str]:
        return sorted(self._snapshot)

    def version_states(self, name: str) -> list[VersionState]:
        """Every version the manager knows of `name`: available, loading, unloaded or failed."""
        return list(self._model(name).states.values())

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._model(name).labels)

    def ready(self) -> bool:
        """At least one model, and every model found has a version to serve."""
        snapshot = self._snapshot
        return bool(snapshot) and all(model.servables for model in snapshot.values())

    def _model(self, name: str) -> _Model:
        snapshot = self._snapshot
        model = snapshot.get(name)
        if model is None:
            raise NotFound(f"model {name!r} not found; {_listing(sorted(snapshot), 'models')}")
        return model


def _listing(items: list[object], what: str) -> str:
    if not items:
        return f"there are no {what}"
    return f"{what}: {', '.join(str(i) for i in items)}"
