# The model server: gunicorn + Flask serving the SavedModels in models/.
#
#   docker build --network host -t keras-serving .
#   docker run --rm -p 8501:8501 --read-only --tmpfs /tmp keras-serving
#
# Two stages: the builder makes a virtualenv from requirements.txt (runtime pins only);
# the runtime stage gets that venv, service/, preprocessing/, models/ and pyproject.toml (for the version)
# and nothing else: no training code, tests, dev dependencies or compilers.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# pip compiles the .pyc files at install time: nothing is compiled (or written) at run time.
# Not needed to serve (~350 MB): TensorFlow's C++ headers (for building custom ops) and libclang.
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
    && /opt/venv/bin/pip uninstall --yes --quiet libclang \
    && rm -rf /opt/venv/lib/python3*/site-packages/tensorflow/include

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="keras-serving" \
      org.opencontainers.image.description="Keras/TensorFlow SavedModels over HTTP (TF Serving REST, Open Inference Protocol v2, friendly API)" \
      org.opencontainers.image.licenses="MIT"
# No writes outside /tmp: the image runs with a read-only root file system (HOME for Keras' config).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=2 \
    BIND=0.0.0.0:8501 \
    MODEL_BASE_PATH=/app/models \
    WEB_CONCURRENCY=2 \
    WORKER_CONNECTIONS=1000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml ./
COPY service/ ./service/
COPY preprocessing/ ./preprocessing/
COPY models/ ./models/
RUN python -m compileall -q service preprocessing
USER 10001:10001
EXPOSE 8501
# Ready = every model has a loaded, self-tested version. Port from BIND (0.0.0.0 -> loopback).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host, _, port = os.environ.get('BIND', '0.0.0.0:8501').rpartition(':'); host = '127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host.strip('[]'); urllib.request.urlopen(f'http://{host}:{port}/v2/health/ready', timeout=4)"]
CMD ["gunicorn", "--config", "service/gunicorn_conf.py"]
