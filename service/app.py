"""The application factory: configuration in, a Flask app serving every model out."""

from __future__ import annotations

import functools

from flask import Flask

from service import middleware
from service.api import docs, friendly, health, tfserving, v2, web
from service.api.http import SegmentConverter, register_error_handlers
from service.config import Config
from service.core.dataplane import DataPlane
from service.ops import metrics
from service.repository.loader import load_servable
from service.repository.manager import ModelManager
from service.repository.policy import PolicyFile
from service.repository.watcher import Watcher
from service.runtime import configure_tensorflow, off_the_loop


def create_app(config: Config | None = None, *, watch: bool = True) -> Flask:
    """Build the app and load the models; call it in each worker, after the fork."""
    config = config or Config.from_env()
    configure_tensorflow(config)
    loader = off_the_loop(functools.partial(load_servable, compile_litert=config.compiled_path))
    manager = ModelManager(config.model_base_path, PolicyFile(config.model_config), loader=loader,
                           observer=metrics.observe_model_load)
    manager.refresh()

    # No app-wide /static route: the page and the docs serve their files through their
    # blueprints, which add the security headers.
    app = Flask(__name__, static_folder=None)
    app.url_map.converters["default"] = SegmentConverter  # route variables never hold ':' (name:predict)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    app.extensions["config"] = config
    app.extensions["data_plane"] = DataPlane(manager, config, observe_queue=metrics.record_queue)
    register_error_handlers(app)
    middleware.install(app, config)  # request id, metrics, access log, API keys, CORS, never debug
    app.register_blueprint(tfserving.blueprint)
    app.register_blueprint(friendly.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(v2.blueprint)
    app.register_blueprint(docs.blueprint)
    app.register_blueprint(web.blueprint)

    if watch and config.poll_seconds > 0:
        watcher = Watcher(manager, config.poll_seconds)
        watcher.start()
        app.extensions["watcher"] = watcher
    return app
