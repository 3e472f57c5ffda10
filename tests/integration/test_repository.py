"""The model repository: source, policy, card, loader, manager and watcher.

Scenarios are built in tmp_path from copies of the committed models (the linear model loads in
a few hundredths of a second); the manager's bookkeeping is also tested with a fake loader.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from service.errors import InvalidInput, NotFound, Unavailable
from service.repository import source as source_module
from service.repository.card import CardError, read_card
from service.repository.loader import LoadError, load_servable
from service.repository.manager import AVAILABLE, END, LOADING, ModelManager, VersionState
from service.repository.policy import ModelPolicies, PolicyFile, VersionPolicy, load_policies, parse_policies
from service.repository.servable import ModelCard, Servable, Signature, TensorSpec
from service.repository.source import ModelSource
from service.repository.watcher import Watcher

MODELS = Path(__file__).resolve().parents[2] / "models"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


def add_version(base: Path, name: str, version: int, source: str | None = None) -> Path:
    """Copy committed model `source` (default: `name`) version 1 in as `name/version`."""
    target = base / name / str(version)
    shutil.copytree(MODELS / (source or name) / "1", target)
    return target


def add_fake_version(base: Path, name: str, version: int | str) -> Path:
    """A folder the source takes for a finished SavedModel; only the fake loader can 'load' it."""
    target = base / name / str(version)
    (target / "variables").mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"fake")
    return target


def break_graph(version_path: Path) -> None:
    (version_path / "saved_model.pb").write_bytes(b"this is not a protocol buffer")


def edit_golden(version_path: Path, delta: float) -> None:
    golden_path = version_path / "assets.extra" / "golden.json"
    golden = json.loads(golden_path.read_text())
    key = next(iter(golden["outputs"]))
    golden["outputs"][key] = (np.asarray(golden["outputs"][key]) + delta).tolist()
    golden_path.write_text(json.dumps(golden))


def manager_for(base: Path, policies: ModelPolicies | PolicyFile | None = None, loader=load_servable) -> ModelManager:
    # settle_seconds=0: files written by a test are "fresh"; settling has its own tests.
    return ModelManager(base, policies, loader=loader, settle_seconds=0)


def states(manager: ModelManager, name: str) -> dict[int, str]:
    return {s.version: s.state for s in manager.version_states(name)}


def policies_from(document: dict) -> ModelPolicies:
    return parse_policies(document)


def signature(inputs: dict[str, tuple], outputs: dict[str, tuple], dtype: str = "float32") -> Signature:
    return Signature(
        name="serving_default",
        inputs={k: TensorSpec(k, dtype, shape) for k, shape in inputs.items()},
        outputs={k: TensorSpec(k, "float32", shape) for k, shape in outputs.items()},
        function=lambda **_: {},
    )


class FakeLoader:
    """Counts calls; fails for the versions in `failing` (by (name, version))."""

    def __init__(self, failing: set[tuple[str, int]] | None = None, error: Exception | None = None) -> None:
        self.failing = failing or set()
        self.error = error
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, version: int, path: Path) -> Servable:
        with self.lock:
            self.calls.append((name, version))
        if (name, version) in self.failing:
            raise self.error or LoadError(f"model {name!r} version {version}: broken on purpose")
        card = ModelCard(raw={}, task="tensor", input_name="x", output_name="y", input_kind="tensor")
        return Servable(name=name, version=version, path=path, card=card,
                        signatures={"serving_default": signature({"x": (None, 1)}, {"y": (None, 1)})})


# ----------------------------------------------------------------------------- source


def test_scan_finds_the_committed_models():
    assert ModelSource(MODELS).scan().versions() == {"fashion_mnist": [1, 2], "iris": [1], "linear": [1]}


def test_scan_ignores_what_is_not_a_finished_version(base):
    add_fake_version(base, "linear", 1)
    add_fake_version(base, "linear", 10)
    add_fake_version(base, "linear", ".staging-0123abcd")   # training's work in progress
    add_fake_version(base, "linear", "01")                  # would alias version 1
    add_fake_version(base, "linear", "0")
    add_fake_version(base, "linear", "latest")
    (base / "linear" / "3").write_text("a file, not a folder")
    (base / "linear" / "4" / "variables").mkdir(parents=True)           # no saved_model.pb yet
    (base / "linear" / "5").mkdir()
    (base / "linear" / "5" / "saved_model.pb").write_bytes(b"x")        # no variables/ yet
    add_fake_version(base, ".hidden", 1)
    add_fake_version(base, "bad name", 1)
    add_fake_version(base, "with.dots-and_dashes", 2)
    (base / "README.md").write_text("not a model")

    assert ModelSource(base, 0).scan().versions() == {"linear": [1, 10], "with.dots-and_dashes": [2]}


def test_scan_of_a_missing_base_is_empty(tmp_path):
    assert ModelSource(tmp_path / "nowhere").scan().versions() == {}
    assert ModelSource(tmp_path / "nowhere").scan().readable is False


def test_scan_waits_until_a_version_has_settled(base):
    version = add_version(base, "linear", 1)
    assert ModelSource(base, 1).scan().versions() == {"linear": [1]}   # copytree keeps the old mtimes

    (version / "variables" / "variables.index").touch()       # as if still being written
    assert ModelSource(base, 1).scan().versions() == {}
    old = time.time() - 5
    for path in [version, *version.rglob("*")]:
        os.utime(path, (old, old))
    assert ModelSource(base, 1).scan().versions() == {"linear": [1]}


def test_source_accepts_a_version_whose_files_stopped_changing(base):
    version = add_version(base, "linear", 1)
    future = time.time() + 3600                                # a clock-skewed copy: mtime never "old"
    os.utime(version / "saved_model.pb", (future, future))
    source = ModelSource(base, settle_seconds=0.2)
    assert source.scan().versions() == {}
    time.sleep(0.25)
    assert source.scan().versions() == {"linear": [1]}         # same fingerprint as a scan ago

    source = ModelSource(base, settle_seconds=0.2)
    assert source.scan().versions() == {}
    (version / "variables" / "variables.index").write_bytes(b"grown")   # changed between scans
    os.utime(version / "variables" / "variables.index", (future, future))
    time.sleep(0.25)
    assert source.scan().versions() == {}
    time.sleep(0.25)
    assert source.scan().versions() == {"linear": [1]}


def test_scan_survives_unreadable_folders(base, monkeypatch, caplog):
    add_fake_version(base, "iris", 1)
    add_fake_version(base, "linear", 1)
    add_fake_version(base, "linear", 2)
    real_scandir, real_listdir = os.scandir, os.listdir

    def scandir(path):
        if Path(path).name == "iris":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    def listdir(path):
        if Path(path) == base / "linear" / "2":
            raise PermissionError(13, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(source_module.os, "scandir", scandir)
    monkeypatch.setattr(source_module.os, "listdir", listdir)
    assert ModelSource(base, 0).scan().versions() == {"linear": [1]}

    source = ModelSource(base, settle_seconds=0)
    caplog.clear()
    result = source.scan()
    assert result.models["iris"].readable is False
    assert result.models["linear"].present == {1, 2}
    assert "Permission denied" in caplog.text
    caplog.clear()
    source.scan()
    assert caplog.text == ""                                   # said once, not every poll


def test_scan_survives_a_folder_without_permissions(base):
    add_fake_version(base, "linear", 1)
    add_fake_version(base, "iris", 1)
    folder = base / "iris"
    folder.chmod(0)
    try:
        try:
            os.listdir(folder)
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: chmod 000 does not stop reading (covered by the monkeypatched test)")
        assert ModelSource(base, 0).scan().versions() == {"linear": [1]}
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------- policy


def test_default_policy_serves_the_latest_version():
    policies = load_policies(None)
    assert policies.select("anything", [3, 1, 2]) == [3]
    assert policies.labels("anything") == {}


@pytest.mark.parametrize(("policy", "expected"), [
    (VersionPolicy("latest", 2), [3, 5]),
    (VersionPolicy("latest", 9), [1, 3, 5]),
    (VersionPolicy("all"), [1, 3, 5]),
    (VersionPolicy("specific", versions=frozenset({1, 4, 5})), [1, 5]),
])
def test_version_policies_select(policy, expected):
    assert policy.select([5, 1, 3]) == expected
    assert policy.select([]) == []


def test_policies_from_json(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": {
        "fashion_mnist": {"version_policy": {"latest": 2}, "labels": {"stable": 1, "canary": 2}},
        "iris": {"version_policy": "all"},
        "linear": {"version_policy": {"specific": [1, 3]}},
    }}))
    policies = load_policies(path)
    assert policies.select("fashion_mnist", [1, 2, 3]) == [2, 3]
    assert policies.labels("fashion_mnist") == {"stable": 1, "canary": 2}
    assert policies.select("iris", [1, 2, 3]) == [1, 2, 3]
    assert policies.select("linear", [1, 2, 3]) == [1, 3]
    assert policies.select("other", [1, 2, 3]) == [3]


def test_policies_from_yaml_including_tensorflow_serving_spellings(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  fashion_mnist:\n"
        "    version_policy: {latest: 2}\n"
        "    labels: {stable: 1, canary: 2}\n"
        "  iris:\n"
        "    version_policy: {latest: {num_versions: 3}}\n"
        "  linear:\n"
        "    version_policy: {specific: {versions: [2]}}\n"
        "  other:\n"
        "    version_policy: {all: {}}\n"
        "  bare:\n"
    )
    policies = load_policies(path)
    assert policies.select("fashion_mnist", [1, 2, 3]) == [2, 3]
    assert policies.labels("fashion_mnist") == {"stable": 1, "canary": 2}
    assert policies.select("iris", range(1, 6)) == [3, 4, 5]
    assert policies.select("linear", [1, 2, 3]) == [2]
    assert policies.select("other", [1, 2]) == [1, 2]
    assert policies.select("bare", [1, 2]) == [2]


def test_an_empty_policy_file_means_defaults(tmp_path):
    (tmp_path / "empty.yml").write_text("")
    assert load_policies(tmp_path / "empty.yml").select("x", [1, 2]) == [2]


@pytest.mark.parametrize(("file", "content", "message"), [
    ("m.json", "{", "invalid JSON at line 1"),
    ("m.yaml", "models: [unclosed", "invalid YAML at line"),
    ("m.toml", "models = {}", "unsupported extension '.toml'"),
    ("m.json", "[]", "expected a mapping with a 'models' key"),
    ("m.json", '{"model": {}}', "unknown top-level key(s) 'model'"),
    ("m.json", '{"models": {"iris": {"version_polcy": "all"}}}', "unknown key(s) 'version_polcy'"),
    ("m.json", '{"models": {"iris": {"version_policy": {"latest": 0}}}}', "latest must be a positive integer"),
    ("m.json", '{"models": {"iris": {"version_policy": {"latest": true}}}}', "latest must be a positive integer"),
    ("m.json", '{"models": {"iris": {"version_policy": {"specific": []}}}}', "non-empty list"),
    ("m.json", '{"models": {"iris": {"version_policy": {"newest": 1}}}}', "unknown policy 'newest'"),
    ("m.json", '{"models": {"iris": {"version_policy": "some"}}}', "must be 'all'"),
    ("m.json", '{"models": {"iris": {"labels": {"stable": "one"}}}}', "label 'stable' must be a positive integer"),
    ("m.json", '{"models": {"iris": {"labels": {"2": 2}}}}', "not a number"),
    ("m.json", '{"models": {"../etc": {}}}', "not a valid folder name"),
])
def test_bad_policy_files_say_what_is_wrong(tmp_path, file, content, message):
    path = tmp_path / file
    path.write_text(content)
    with pytest.raises(ValueError, match="model config file") as caught:
        load_policies(path)
    assert message in str(caught.value)


def test_a_missing_policy_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_policies(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- card


IRIS_SIGNATURE = signature({"features": (None, 4)}, {"probabilities": (None, 3)})


def test_read_card_of_committed_models():
    iris = read_card(MODELS / "iris" / "1", IRIS_SIGNATURE)
    assert (iris.task, iris.input_kind, iris.input_name, iris.output_name) == \
        ("classification", "features", "features", "probabilities")
    assert iris.feature_names == ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
    assert iris.class_names == ("setosa", "versicolor", "virginica")
    assert iris.class_names_es == ()
    assert iris.golden is not None and iris.golden["atol"] == 1e-5
    assert iris.extra_dir == MODELS / "iris" / "1" / "assets.extra"
    assert iris.raw["name"] == "iris"

    fashion = read_card(MODELS / "fashion_mnist" / "1",
                        signature({"image": (None, 28, 28)}, {"probabilities": (None, 10)}))
    assert fashion.input_kind == "image"
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names_es[0] == "Camiseta"

    linear = read_card(MODELS / "linear" / "1", signature({"x": (None, 1)}, {"y": (None, 1)}))
    assert (linear.task, linear.feature_names, linear.class_names) == ("regression", ("x",), ())


def test_a_version_without_card_gets_one_from_its_signature(base):
    version = add_version(base, "plain", 7, source="iris")
    shutil.rmtree(version / "assets.extra")
    card = read_card(version, signature({"b": (None, 2), "a": (None, 4)}, {"out": (None,)}))
    assert (card.task, card.input_kind, card.input_name, card.output_name) == ("tensor", "tensor", "a", "out")
    assert card.golden is None and card.extra_dir is None
    assert card.raw == {
        "name": "plain", "version": 7, "task": "tensor", "signature_name": "serving_default",
        "input": {"name": "a", "dtype": "float32", "shape": [4]},
        "output": {"name": "out", "dtype": "float32", "shape": []},
        "card": "generated from the serving_default signature",
    }


def _edit_card(version_path: Path, edit) -> None:
    path = version_path / "assets.extra" / "model_card.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(task="clustering"), "task 'clustering' is not one of"),
    (lambda c: c["input"].update(name="measurements"), "input.name 'measurements' is not an input"),
    (lambda c: c["output"].update(name="logits"), "output.name 'logits' is not an output"),
    (lambda c: c["input"].update(kind="audio"), "input.kind 'audio'"),
    (lambda c: c["input"]["features"].pop(), "lists 3 features but input 'features' takes 4"),
    (lambda c: c.update(classes=None), "needs 'classes'"),
    (lambda c: c["classes"].pop(), "2 classes but output 'probabilities' gives 3"),
    (lambda c: c["classes"][0].update(index=5), "class indices must be 0..2"),
    (lambda c: c.pop("input"), "input must be an object"),
    (lambda c: c.update(golden_file="../../etc/passwd"), "golden_file must be a file name"),
    (lambda c: c.update(golden_file="other.json"), "golden_file 'other.json' is missing"),
    (lambda c: c.update(signature_name="top_class"), "describes signature 'top_class'"),
])
def test_a_malformed_card_is_an_error(base, edit, message):
    version = add_version(base, "iris", 1)
    _edit_card(version, edit)
    with pytest.raises(CardError) as caught:
        read_card(version, IRIS_SIGNATURE)
    assert message in str(caught.value)


def test_a_card_that_is_not_json_is_an_error(base):
    version = add_version(base, "iris", 1)
    (version / "assets.extra" / "model_card.json").write_text("{not json")
    with pytest.raises(CardError, match=r"model_card.json: invalid JSON at line 1"):
        read_card(version, IRIS_SIGNATURE)
    (version / "assets.extra" / "model_card.json").unlink()
    (version / "assets.extra" / "golden.json").write_text('{"atol": -1, "inputs": {}, "outputs": {}}')
    with pytest.raises(CardError, match=r"golden.json: atol must be a non-negative number"):
        read_card(version, IRIS_SIGNATURE)


# ----------------------------------------------------------------------------- loader


def test_load_servable_reads_signatures_card_and_self_tests(base):
    path = add_version(base, "iris", 3)
    servable = load_servable("iris", 3, path)
    assert (servable.name, servable.version, servable.path) == ("iris", 3, path)
    assert servable.default_signature == "serving_default"
    assert set(servable.signatures) == {"serving_default", "top_class"}
    default = servable.signature(None)
    assert default.inputs == {"features": TensorSpec("features", "float32", (None, 4))}
    assert default.outputs == {"probabilities": TensorSpec("probabilities", "float32", (None, 3))}
    assert servable.signatures["top_class"].outputs["class_id"] == TensorSpec("class_id", "int64", (None,))
    assert servable.card.class_names == ("setosa", "versicolor", "virginica")
    assert servable.handle is not None
    assert 0 < servable.loaded_seconds < 30

    golden = servable.card.golden
    out = default({"features": np.asarray(golden["inputs"]["features"], dtype=np.float32)})
    np.testing.assert_allclose(out["probabilities"], golden["outputs"]["probabilities"], atol=1e-5)
    top = servable.signature("top_class")({"features": np.asarray(golden["inputs"]["features"], np.float32)})
    assert top["class_id"].tolist() == [0, 1, 1]
    with pytest.raises(NotFound, match="has no signature 'nope'; it has serving_default, top_class"):
        servable.signature("nope")


def test_load_fails_when_golden_outputs_are_not_reproduced(base):
    path = add_version(base, "linear", 2)
    edit_golden(path, 0.5)
    with pytest.raises(LoadError) as caught:
        load_servable("linear", 2, path)
    message = caught.value.message
    assert message.startswith("model 'linear' version 2: golden output 'y' differs by 0.5 > atol 1e-05")
    assert str(base) not in message


def test_load_fails_cleanly_on_a_garbage_saved_model(base):
    path = add_version(base, "linear", 2)
    break_graph(path)
    with pytest.raises(LoadError) as caught:
        load_servable("linear", 2, path)
    message = caught.value.message
    assert message.startswith("model 'linear' version 2: cannot load the SavedModel")
    assert str(base) not in message and str(base.parent) not in message


def test_load_fails_on_a_malformed_card(base):
    path = add_version(base, "iris", 1)
    _edit_card(path, lambda c: c["output"].update(name="logits"))
    with pytest.raises(LoadError, match=r"model 'iris' version 1: model_card\.json: output\.name 'logits'"):
        load_servable("iris", 1, path)


def test_load_without_card_synthesizes_one(base):
    path = add_version(base, "plain", 1, source="linear")
    shutil.rmtree(path / "assets.extra")
    servable = load_servable("plain", 1, path)
    assert servable.card.task == "tensor"
    assert servable.card.raw["card"] == "generated from the serving_default signature"
    assert servable.card.raw["input"] == {"name": "x", "dtype": "float32", "shape": [1]}
    assert servable.signature(None)({"x": np.array([[2.0]], np.float32)})["y"].shape == (1, 1)


def test_load_any_saved_model_with_strings_and_unknown_dims(base):
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def length(self, text):
            return {"length": tf.strings.length(text)}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="matrix")])
        def total(self, matrix):
            return {"sum": tf.reduce_sum(matrix, axis=-1)}

    module = Module()
    path = base / "generic" / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.length, "total": module.total})
    servable = load_servable("generic", 1, path)
    default = servable.signature(None)
    assert default.inputs == {"text": TensorSpec("text", "object", (None,))}
    assert default.outputs == {"length": TensorSpec("length", "int32", (None,))}
    assert servable.signatures["total"].inputs["matrix"].shape == (None, None)
    assert servable.card.raw["input"] == {"name": "text", "dtype": "object", "shape": []}
    assert default({"text": np.array([b"abc", b""], dtype=object)})["length"].tolist() == [3, 0]


# ----------------------------------------------------------------------------- manager with real models


def test_manager_serves_the_latest_version_by_default(base):
    add_version(base, "linear", 1)
    add_version(base, "linear", 2)
    add_version(base, "iris", 1)
    manager = manager_for(base)
    assert manager.ready() is False
    manager.refresh()
    assert manager.model_names() == ["iris", "linear"]
    assert manager.servable("linear").version == 2
    assert manager.version_states("linear") == [VersionState(2, AVAILABLE)]
    assert manager.ready() is True
    with pytest.raises(NotFound, match=r"model 'linear' has no version 1 available; available versions: 2"):
        manager.servable("linear", 1)


@pytest.mark.parametrize(("policy", "served"), [
    ({"latest": 2}, [2, 3]),
    ("all", [1, 2, 3]),
    ({"specific": [1, 3]}, [1, 3]),
])
def test_manager_applies_the_version_policy(base, policy, served):
    for version in (1, 2, 3):
        add_version(base, "linear", version)
    manager = manager_for(base, policies_from({"models": {"linear": {"version_policy": policy}}}))
    manager.refresh()
    assert states(manager, "linear") == dict.fromkeys(served, AVAILABLE)
    assert [manager.servable("linear", v).version for v in served] == served
    assert manager.servable("linear").version == max(served)


def test_manager_labels(base):
    for version in (1, 2, 3):
        add_version(base, "linear", version)
    manager = manager_for(base, policies_from({"models": {"linear": {
        "version_policy": {"specific": [1, 2]}, "labels": {"stable": 1, "canary": 2, "next": 3}}}}))
    manager.refresh()
    assert manager.labels("linear") == {"stable": 1, "canary": 2, "next": 3}
    assert manager.servable("linear", label="stable").version == 1
    assert manager.servable("linear", label="canary").version == 2
    with pytest.raises(NotFound, match=r"label 'next' of model 'linear' points to version 3, which is not loaded; "
                                       r"loaded versions: 1, 2"):
        manager.servable("linear", label="next")
    with pytest.raises(NotFound, match=r"no version label 'beta'; labels: canary, next, stable"):
        manager.servable("linear", label="beta")
    with pytest.raises(InvalidInput):
        manager.servable("linear", version=1, label="stable")


def test_a_changed_policy_file_applies_at_the_next_refresh_and_a_broken_one_changes_nothing(base, tmp_path, caplog):
    for version in (1, 2, 3):
        add_fake_version(base, "linear", version)
    config = tmp_path / "models.yaml"
    config.write_text("models:\n  linear: {version_policy: {specific: [1]}, labels: {stable: 1}}\n")
    manager = manager_for(base, PolicyFile(config), loader=FakeLoader())
    manager.refresh()
    assert states(manager, "linear") == {1: AVAILABLE}

    config.write_text("models:\n  linear: {version_policy: {latest: 2}, labels: {stable: 2}}\n")
    manager.refresh()
    assert states(manager, "linear") == {1: END, 2: AVAILABLE, 3: AVAILABLE}
    assert manager.labels("linear") == {"stable": 2}

    for broken in ("models:\n  linear: {version_policy: {latest: 0}}\n", "models: [", None):
        if broken is None:
            config.unlink()
        else:
            config.write_text(broken)
        caplog.clear()
        manager.refresh()
        assert states(manager, "linear") == {1: END, 2: AVAILABLE, 3: AVAILABLE}
        assert manager.labels("linear") == {"stable": 2}
        assert "keeping the version policies and labels read before" in caplog.text

    config.write_text("{}")   # back, with nothing in it: every model's latest version, no labels
    manager.refresh()
    assert states(manager, "linear") == {1: END, 2: END, 3: AVAILABLE}
    assert manager.labels("linear") == {}


def test_manager_unknown_names_say_what_exists(base):
    add_version(base, "linear", 1)
    manager = manager_for(base)
    with pytest.raises(NotFound, match="model 'linear' not found; there are no models"):
        manager.servable("linear")
    manager.refresh()
    with pytest.raises(NotFound, match="model 'iris' not found; models: linear"):
        manager.servable("iris")
    with pytest.raises(NotFound, match="model 'iris' not found"):
        manager.version_states("iris")
    with pytest.raises(NotFound, match="model 'iris' not found"):
        manager.labels("iris")
    with pytest.raises(NotFound, match="no version 9 available; available versions: 1"):
        manager.servable("linear", 9)
    with pytest.raises(NotFound, match="no version label 'stable'; there are no labels"):
        manager.servable("linear", label="stable")


def test_a_corrupt_new_version_keeps_the_previous_one_serving(base):
    add_version(base, "linear", 1)
    manager = manager_for(base)
    manager.refresh()
    held = manager.servable("linear")

    broken = add_version(base, "linear", 2)
    break_graph(broken)
    manager.refresh()
    assert manager.servable("linear") is held
    (v1, v2) = manager.version_states("linear")
    assert v1 == VersionState(1, AVAILABLE)
    assert v2.state == END and v2.error.startswith("model 'linear' version 2: cannot load the SavedModel")
    assert str(base) not in v2.error
    assert manager.ready() is True
    with pytest.raises(NotFound, match=r"no version 2 available \(it is END, failed to load\)"):
        manager.servable("linear", 2)

    shutil.rmtree(broken)                       # fixed: the folder changed, so it is tried again
    add_version(base, "linear", 2)
    manager.refresh()
    assert manager.servable("linear").version == 2
    assert manager.version_states("linear") == [VersionState(1, END), VersionState(2, AVAILABLE)]


def test_a_version_failing_its_golden_set_is_not_served(base):
    add_version(base, "iris", 1)
    edit_golden(add_version(base, "iris", 2), 0.25)
    manager = manager_for(base)
    manager.refresh()
    assert manager.servable("iris").version == 1
    failed = manager.version_states("iris")[1]
    assert failed.state == END and "golden output 'probabilities' differs by 0.25 > atol" in failed.error


def test_half_written_and_staging_folders_are_not_picked_up(base):
    add_version(base, "linear", 1)
    shutil.copytree(MODELS / "linear" / "1", base / "linear" / ".staging-5f1c", )
    half = base / "linear" / "2"
    shutil.copytree(MODELS / "linear" / "1" / "variables", half / "variables")
    manager = manager_for(base)
    manager.refresh()
    assert manager.version_states("linear") == [VersionState(1, AVAILABLE)]

    shutil.copy2(MODELS / "linear" / "1" / "saved_model.pb", half / "saved_model.pb")
    shutil.copytree(MODELS / "linear" / "1" / "assets.extra", half / "assets.extra")
    manager.refresh()
    assert manager.servable("linear").version == 2


def test_a_saved_model_without_card_is_served(base):
    path = add_version(base, "plain", 1, source="iris")
    shutil.rmtree(path / "assets.extra")
    manager = manager_for(base)
    manager.refresh()
    servable = manager.servable("plain")
    assert servable.card.task == "tensor" and servable.card.input_name == "features"
    assert servable.card.raw["card"] == "generated from the serving_default signature"


def test_removed_versions_and_models_disappear(base):
    add_version(base, "linear", 1)
    v2 = add_version(base, "linear", 2)
    add_version(base, "iris", 1)
    manager = manager_for(base, policies_from({"models": {"linear": {"version_policy": "all"}}}))
    manager.refresh()
    held = manager.servable("linear", 2)

    shutil.rmtree(v2)
    manager.refresh()
    assert manager.version_states("linear") == [VersionState(1, AVAILABLE)]
    assert manager.servable("linear").version == 1
    # A request that got version 2 before it went finishes on it.
    assert held.signature(None)({"x": np.array([[1.0]], np.float32)})["y"].shape == (1, 1)

    shutil.rmtree(base / "iris")
    manager.refresh()
    assert manager.model_names() == ["linear"]
    with pytest.raises(NotFound, match="model 'iris' not found"):
        manager.servable("iris")


def test_ready_needs_a_version_of_every_model(base):
    manager = manager_for(base)
    manager.refresh()
    assert manager.ready() is False                  # no models at all
    add_version(base, "linear", 1)
    break_graph(add_version(base, "iris", 1))
    manager.refresh()
    assert manager.model_names() == ["iris", "linear"]
    assert manager.ready() is False                  # iris has nothing to serve
    with pytest.raises(NotFound, match="model 'iris' has no available version"):
        manager.servable("iris")


# ----------------------------------------------------------------------------- manager bookkeeping (fake loader)


def test_a_failed_version_is_not_retried_until_its_folder_changes(base):
    add_fake_version(base, "m", 1)
    v2 = add_fake_version(base, "m", 2)
    loader = FakeLoader(failing={("m", 2)})
    manager = manager_for(base, loader=loader)
    manager.refresh()
    assert loader.calls == [("m", 2), ("m", 1)]      # newest failed, so it fell back to version 1
    assert states(manager, "m") == {1: AVAILABLE, 2: END}
    manager.refresh()
    manager.refresh()
    assert loader.calls == [("m", 2), ("m", 1)]

    loader.failing.clear()
    (v2 / "saved_model.pb").write_bytes(b"fixed, and a different size")
    manager.refresh()
    assert loader.calls[-1] == ("m", 2)
    assert states(manager, "m") == {1: END, 2: AVAILABLE}


def test_unexpected_loader_errors_are_recorded_without_paths(base):
    add_fake_version(base, "m", 1)
    loader = FakeLoader(failing={("m", 1)}, error=RuntimeError(f"boom reading {base}/m/1/saved_model.pb"))
    manager = manager_for(base, loader=loader)
    manager.refresh()
    (state,) = manager.version_states("m")
    assert state.state == END
    assert state.error == "model 'm' version 1: RuntimeError: boom reading m/1/saved_model.pb"


def test_unreadable_or_missing_folders_keep_what_is_loaded(base, monkeypatch):
    add_fake_version(base, "m", 1)
    manager = manager_for(base, loader=FakeLoader())
    manager.refresh()
    real_scandir = os.scandir

    def deny(target):
        def scandir(path):
            if Path(path) == target:
                raise PermissionError(13, "Permission denied")
            return real_scandir(path)
        return scandir

    monkeypatch.setattr(source_module.os, "scandir", deny(base / "m"))
    manager.refresh()
    assert manager.servable("m").version == 1
    monkeypatch.setattr(source_module.os, "scandir", deny(base))
    manager.refresh()
    assert manager.servable("m").version == 1
    monkeypatch.undo()

    moved = base.with_name("elsewhere")
    base.rename(moved)                                # a volume that blinked
    manager.refresh()
    assert manager.servable("m").version == 1


def test_a_loaded_version_being_touched_is_not_dropped(base):
    v1 = add_fake_version(base, "m", 1)
    manager = ModelManager(base, loader=FakeLoader(), settle_seconds=0)
    manager.refresh()
    (v1 / "saved_model.pb").unlink()                  # e.g. an rsync rewriting it in place
    manager.refresh()
    assert manager.servable("m").version == 1


def test_loading_is_visible_and_readers_never_block(base):
    add_fake_version(base, "m", 1)
    started, release = threading.Event(), threading.Event()
    fake = FakeLoader()

    def slow_loader(name, version, path):
        started.set()
        assert release.wait(10)
        return fake(name, version, path)

    manager = manager_for(base, loader=slow_loader)
    refresher = threading.Thread(target=manager.refresh)
    refresher.start()
    try:
        assert started.wait(10)
        assert manager.version_states("m") == [VersionState(1, LOADING)]
        with pytest.raises(Unavailable, match="model 'm' is loading"):
            manager.servable("m")
        assert manager.ready() is False
    finally:
        release.set()
        refresher.join(10)
    assert manager.servable("m").version == 1


def test_concurrent_reads_during_refreshes(base):
    add_fake_version(base, "m", 1)
    manager = manager_for(base, loader=FakeLoader())
    manager.refresh()
    errors: list[BaseException] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                assert manager.servable("m").version >= 1
                manager.version_states("m")
            except BaseException as exc:
                errors.append(exc)
                return
            time.sleep(0.0001)  # let the refreshing thread have the GIL now and then

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for version in range(2, 12):
            add_fake_version(base, "m", version)
            manager.refresh()
            if version % 3 == 0:
                shutil.rmtree(base / "m" / str(version - 1))
                manager.refresh()
    finally:
        stop.set()
        for reader in readers:
            reader.join(10)
    assert errors == []
    assert manager.servable("m").version == 11


# ----------------------------------------------------------------------------- watcher


def test_watcher_polls_until_stopped_and_survives_errors():
    calls: list[float] = []
    enough = threading.Event()

    class Manager:
        def refresh(self) -> None:
            calls.append(time.monotonic())
            if len(calls) >= 3:
                enough.set()
            if len(calls) == 1:
                raise RuntimeError("a bad poll")

    watcher = Watcher(Manager(), poll_seconds=0.02)
    watcher.start()
    watcher.start()                                  # idempotent
    assert enough.wait(5)
    watcher.stop()
    assert not watcher.running
    count = len(calls)
    time.sleep(0.1)
    assert len(calls) == count


def test_watcher_with_no_interval_does_not_poll():
    watcher = Watcher(object(), poll_seconds=0)      # type: ignore[arg-type]
    watcher.start()
    assert not watcher.running
    watcher.stop()
