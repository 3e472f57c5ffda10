"""Load tests and benchmarks of the real server: locust suite, wrk/locust bench, shared gunicorn helper."""
