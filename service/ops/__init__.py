"""Operations: request context and timing, Prometheus metrics, JSON logs, graceful shutdown.

Kept import-light on purpose: gunicorn's master imports `service.ops.logs` and
`service.ops.lifecycle` before PROMETHEUS_MULTIPROC_DIR is set, and prometheus_client
picks single- or multi-process mode once, when it is first imported. Only
`service.ops.metrics` (imported by the app, in the workers) imports prometheus_client.
"""
