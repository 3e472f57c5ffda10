"""The SignatureDefs of a SavedModel as TensorFlow Serving's metadata JSON.

Read from saved_model.pb rather than rebuilt from the loaded functions, so tensor names,
method names and the init op appear exactly as TensorFlow Serving would show them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from service.repository.servable import Servable


def model_metadata(servable: Servable) -> dict[str, Any]:
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": {"signature_def": _signature_defs(servable.path)}},
    }


@functools.lru_cache(maxsize=64)
def _signature_defs(path: Path) -> dict[str, Any]:
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())

    def tensor(info: Any) -> dict[str, Any]:
        return {
            "dtype": types_pb2.DataType.Name(info.dtype),
            "tensor_shape": {
                "dim": [{"size": str(d.size), "name": d.name} for d in info.tensor_shape.dim],
                "unknown_rank": info.tensor_shape.unknown_rank,
            },
            "name": info.name,
        }

    return {
        key: {
            "inputs": {name: tensor(info) for name, info in sig.inputs.items()},
            "outputs": {name: tensor(info) for name, info in sig.outputs.items()},
            "method_name": sig.method_name,
            "defaults": {},
        }
        for key, sig in sorted(saved_model.meta_graphs[0].signature_def.items())
    }
