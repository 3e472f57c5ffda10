"""`python -m training <model>`: train one model and export it as a new version."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from training import TrainingError
from training.augment import Augmentation
from training.recipes import RECIPES, Hyperparameters, recipe_for


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Train one of the lesson's models, evaluate it on held-out data and "
        "export it as the next version of a TensorFlow SavedModel.",
    )
    p.add_argument("model", help=f"one of: {', '.join(RECIPES)} (fashion_mnist_cnn exports as fashion_mnist)")
    p.add_argument("--epochs", type=_positive_int, help="default: the lesson's")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--learning-rate", type=_positive_float)
    p.add_argument("--hidden-units", type=_positive_int, help="width of the hidden layer (iris, fashion_mnist*)")
    p.add_argument("--augment", metavar="KEY=VALUE,...",
                   help="training augmentations over the recipe's, for image recipes (keys: "
                   f"{', '.join(f.name for f in fields(Augmentation))}; see training/augment.py); 'none' for none"),
    p.add_argument("--seed", type=int, help="random seed for weights, shuffling and the iris split")
    p.add_argument("--data-dir", type=Path,
                   help="local data: the four Fashion-MNIST IDX .gz files, or a folder with iris.csv; "
                   "default: Keras' download for fashion_mnist, the shipped CSV for iris")
    p.add_argument("--output-dir", type=Path, default=Path("models"), help="models folder (default: models)")
    p.add_argument("--train-limit", type=_positive_int, help="use only the first N training samples")
    p.add_argument("--test-limit", type=_positive_int, help="use only the first N test samples")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        recipe = recipe_for(args.model)
        defaults = recipe.defaults
        hp = Hyperparameters(
            epochs=args.epochs or defaults.epochs,
            batch_size=args.batch_size or defaults.batch_size,
            learning_rate=args.learning_rate or defaults.learning_rate,
            hidden_units=args.hidden_units or defaults.hidden_units,
            seed=defaults.seed if args.seed is None else args.seed,
        )
        augmentation = recipe.augmentation
        if args.augment is not None:
            if recipe.input_schema.get("kind") != "image":
                raise TrainingError(f"--augment: {args.model} is not an image model")
            augmentation = Augmentation.parse(args.augment, base=recipe.augmentation)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from training.train import train

        target = train(recipe, hp, args.data_dir, args.output_dir, args.train_limit, args.test_limit,
                       verbose=0 if args.quiet else 2, augmentation=augmentation)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported {target}")
    return 0
