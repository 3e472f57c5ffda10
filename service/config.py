"""Server settings, read from the environment (twelve-factor), with production defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_MODEL_CONFIG = "models.yaml"   # in model_base_path: used when model_config is not set
NO_MODEL_CONFIG = "none"                # model_config that turns the default off


@dataclass(frozen=True)
class Config:
    model_base_path: Path = Path("models")
    model_config: Path | None = None          # JSON/YAML: version policy and labels per model (default below)
    poll_seconds: float = 2.0                 # how often each worker rescans model_base_path
    max_body_bytes: int = 16 * 1024 * 1024    # any request body; larger answers 413
    max_instances: int = 256                  # instances (rows) in one request
    max_files: int = 16                       # images in one upload
    max_image_pixels: int = 40_000_000        # width x height before decoding; larger answers 413
    # Adaptive micro-batching per worker and signature. Off by default: on the LiteRT path a model
    # call costs microseconds, and handing each request to the batch thread and back cost more
    # (make bench: 15-20% fewer req/s with it on); it pays where model calls are expensive.
    batching: bool = False
    batch_max_size: int = 32                  # instances in one model call
    batch_max_wait_us: int = 500              # how long the first request waits for company
    batch_queue_size: int = 256               # requests waiting per signature; beyond it, 503
    compiled_path: bool = True               # run signatures on LiteRT where they reproduce the SavedModel
    tf_intra_op_threads: int = 1              # per worker: workers must not fight for the cores
    tf_inter_op_threads: int = 1
    # Security (service/middleware/security.py). Keys stay out of repr(), so a logged config shows none.
    api_keys: str = field(default="", repr=False)   # comma-separated bearer keys; empty: no authentication
    auth_open_paths: str = "/v2/health,/metrics,/,/web,/docs,/openapi.json"   # served without a key
    cors_origins: str = ""                    # comma-separated origins allowed from browsers, or *; empty: off

    def __post_init__(self) -> None:
        # Relative paths mean the working directory at start, once: Flask's send_file would take a
        # relative plot path from service/ instead (every plot a 503 under `make serve`), and a
        # later chdir would move the models. absolute(), not resolve(): a symlink (a mounted
        # ConfigMap's ..data) is followed at each read, so swapping its target still takes effect.
        object.__setattr__(self, "model_base_path", Path(self.model_base_path).absolute())
        # MODEL_CONFIG=none: no file at all, not even the models folder's own models.yaml.
        if self.model_config == Path(NO_MODEL_CONFIG):
            object.__setattr__(self, "model_config", None)
        # Without MODEL_CONFIG, the models folder's own models.yaml (if any) sets policies and labels.
        elif self.model_config is None:
            default = self.model_base_path / DEFAULT_MODEL_CONFIG
            if default.is_file():
                object.__setattr__(self, "model_config", default)
        else:
            object.__setattr__(self, "model_config", Path(self.model_config).absolute())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Each field from its upper-case name (`MODEL_BASE_PATH`, `MAX_INSTANCES`, ...)."""
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            raw = environ.get(item.name.upper())
            if raw is None or raw == "":
                continue
            values[item.name] = _parse(item.name, raw, item.type)
        return cls(**values)


def _parse(name: str, raw: str, kind: object) -> object:
    try:
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind == "float":
            return float(raw)
        if kind == "int":
            value = int(raw)
            if value <= 0:
                raise ValueError("must be positive")
            return value
        if kind == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return raw
    except ValueError as exc:
        raise ValueError(f"environment variable {name.upper()}={raw!r}: {exc}") from None
