"""gunicorn settings from the environment. Defaults suit a 2-core machine."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8501")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("KEEPALIVE_SECONDS", "5"))
# Each worker imports service.wsgi itself, so TensorFlow state is never shared across a fork.
preload_app = False
wsgi_app = "service.wsgi:app"
accesslog = os.environ.get("ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
