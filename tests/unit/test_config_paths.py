"""Path settings are made absolute once, against the working directory at start."""

from __future__ import annotations

from pathlib import Path

from service.config import Config


def test_relative_paths_are_taken_from_the_working_directory_at_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.from_env({"MODEL_BASE_PATH": "models", "MODEL_CONFIG": "conf/models.yaml"})
    monkeypatch.chdir("/")
    assert config.model_base_path == tmp_path / "models"
    assert config.model_config == tmp_path / "conf" / "models.yaml"


def test_the_default_models_yaml_is_found_under_a_relative_base_path(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "models.yaml").write_text("models: {}\n")
    monkeypatch.chdir(tmp_path)
    assert Config().model_config == tmp_path / "models" / "models.yaml"


def test_symlinks_are_kept_so_a_swapped_target_still_counts(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "current").symlink_to(tmp_path / "v1")
    assert Config(model_base_path=tmp_path / "current").model_base_path == tmp_path / "current"


def test_model_config_none_still_turns_the_file_off():
    assert Config(model_config=Path("none")).model_config is None
