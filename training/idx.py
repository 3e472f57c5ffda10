"""Reader for the IDX format of (Fashion-)MNIST, strict about headers and sizes.

A truncated download or a swapped file must fail loudly: reading it leniently would train
on garbage and still report a number.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from training import TrainingError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Return the uint8 array stored in a gzip-compressed IDX file, validating every header field."""
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise TrainingError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise TrainingError(f"{path}: not a readable gzip file ({exc})") from None

    dims = 3 if expected_magic == IMAGES_MAGIC else 1
    header_size = 4 + 4 * dims
    if len(payload) < header_size:
        raise TrainingError(f"{path}: truncated header ({len(payload)} bytes)")
    magic = struct.unpack(">i", payload[:4])[0]
    if magic != expected_magic:
        raise TrainingError(f"{path}: magic number {magic}, expected {expected_magic}")
    shape = struct.unpack(f">{dims}i", payload[4:header_size])
    if any(size <= 0 for size in shape):
        raise TrainingError(f"{path}: invalid dimensions {shape}")
    expected = int(np.prod(shape))
    body = len(payload) - header_size
    if body != expected:
        raise TrainingError(f"{path}: {body} data bytes, header {shape} needs {expected}")
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array (N, or N x H x W) as a gzip-compressed IDX file."""
    data = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if data.ndim == 3 else LABELS_MAGIC
    header = struct.pack(f">i{data.ndim}i", magic, *data.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + data.tobytes())
