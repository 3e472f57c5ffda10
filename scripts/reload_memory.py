"""Measure what loading and unloading one model version over and over costs in resident memory.

Loads the 13 MB model of the reload memory test (Keras Input(784) -> Dense(4096) -> Dense(10),
saved with `model.export`) CYCLES times through the real loader, in this process, serves a few
requests on each version (through a Batcher with --batching), unloads it and prints the RSS.
Each suspect can be switched on or off on its own, so its share can be read off separately:

    .venv/bin/python scripts/reload_memory.py [--cycles 16] [--batching] [--golden] [--keep-lanes]
                                              [--no-unload] [--reclaim full|collect|none]

--golden writes a golden set next to the model, so the loader also compiles it to LiteRT.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_MB = (784 * 4096 + 4096 + 4096 * 10 + 10) * 4 / 2**20  # 12.4 MB of float32
_EXPORT = """
import sys
import numpy as np
import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((784,), name="x"), keras.layers.Dense(4096), keras.layers.Dense(10)])
model.export(sys.argv[1], verbose=False)
"""


def export_big_model(target: Path, golden: bool = False) -> Path:
    """Export the model to `target` in a child process, so this process's memory starts clean."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", _EXPORT, str(target)], check=True, env=env, capture_output=True)
    if golden:
        import tensorflow as tf

        inputs = np.linspace(-1, 1, 2 * 784, dtype=np.float32).reshape(2, 784)
        outputs = tf.saved_model.load(str(target)).signatures["serving_default"](x=tf.constant(inputs))
        extra = target / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "golden.json").write_text(json.dumps({
            "inputs": {"x": inputs.tolist()},
            "outputs": {key: value.numpy().tolist() for key, value in outputs.items()},
            "atol": 1e-4,
        }))
    return target


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=16)
    parser.add_argument("--batching", action="store_true", help="serve through a Batcher")
    parser.add_argument("--golden", action="store_true", help="write a golden set, so LiteRT compiles")
    parser.add_argument("--keep-lanes", action="store_true", help="never release the Batcher's lanes")
    parser.add_argument("--no-unload", action="store_true", help="drop the Servable without unloading it")
    parser.add_argument("--reclaim", choices=("full", "collect", "none"), default="full",
                        help="after an unload: gc.collect and malloc_trim (the server's way), gc.collect only, "
                             "or nothing (Python's own collections only)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401 - imported before the first figure, which must not count it

    from service.core.batching import Batcher
    from service.repository.loader import load_servable
    from service.runtime import reclaim_memory

    work = Path(tempfile.mkdtemp())
    try:
        source = export_big_model(work / "export", golden=args.golden)
        batcher = Batcher(8, 2_000, 64) if args.batching else None
        rows = np.zeros((1, 784), np.float32)
        start = rss_mb()
        figures = []
        for cycle in range(1, args.cycles + 1):
            path = work / "big" / str(cycle)
            shutil.copytree(source, path)
            servable = load_servable("big", cycle, path)
            signature = servable.signature(None)
            backend = signature.backend
            for _ in range(4):
                signature({"x": rows}) if batcher is None else batcher.run(servable, signature, {"x": rows}, 1)
            if not args.no_unload:
                servable.unload()
            if batcher is not None and not args.keep_lanes:
                batcher.release("big", cycle)
            del servable, signature
            started = time.perf_counter()
            if args.reclaim == "full":
                reclaim_memory()
            elif args.reclaim == "collect":
                gc.collect()
            reclaim_ms = (time.perf_counter() - started) * 1e3
            shutil.rmtree(path)
            figures.append(rss_mb())
            print(f"cycle {cycle:2d} ({backend}): {figures[-1]:6.0f} MB (+{figures[-1] - start:.0f}), "
                  f"reclaimed in {reclaim_ms:.0f} ms", flush=True)
        half = args.cycles // 2
        print(f"growth over {args.cycles} cycles: {figures[-1] - start:.0f} MB; over the last {half}: "
              f"{figures[-1] - figures[half - 1]:.0f} MB (one model: {WEIGHTS_MB:.1f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
