# Two commands set up everything: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
MODEL ?= fashion_mnist
ARGS ?=

.PHONY: serve test train lint clean loadtest bench reliability faults photos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV): requirements.txt requirements-dev.txt $(RUNTIME)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

serve: $(RUNTIME)  ## serve the models in ./models on http://127.0.0.1:8501
	$(VENV)/bin/gunicorn -c service/gunicorn_conf.py

test: $(DEV)  ## the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

train: $(DEV)  ## make train MODEL=iris ARGS="--epochs 100"
	$(PY) -m training $(MODEL) $(ARGS)

loadtest: $(DEV)  ## make loadtest ARGS="--users 50 --run-time 1m" (loadtest/README.md)
	$(PY) loadtest/run_locust.py $(ARGS)

bench: $(DEV)  ## make bench ARGS="--duration 5"; tables in reports/bench.md
	$(PY) loadtest/bench.py $(ARGS)

reliability: $(DEV)  ## bad-input catalogue, bomb memory and schemathesis (>= 1,000 requests) on a real server
	$(PY) loadtest/reliability.py $(ARGS)

faults: $(DEV)  ## worker SIGKILL, SIGTERM, hot reload, unreadable models, slow clients, under 50 locust users
	$(PY) loadtest/faults.py $(ARGS)

photos: $(DEV)  ## make photos [PHOTOS=/path]: real clothing photos through the served upload path, v1 vs v2
	$(PY) scripts/photos.py $(PHOTOS) $(ARGS)

lint: $(DEV)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
