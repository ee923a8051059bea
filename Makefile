# Scar Watch — `make run` serves the demo at http://127.0.0.1:5000, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
PORT ?= 5000

.PHONY: setup db run test lint bench bench-load clean stack faults

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

db: setup
	$(FLASK) db upgrade

RUN_STARTED := $(shell date +%s)

run: db
	$(FLASK) seed-demo --if-empty  # first run: a year of demo history, every photo analysed here (progress bar)
	SCARWATCH_RUN_STARTED=$(RUN_STARTED) PORT=$(PORT) $(FLASK) serve --port $(PORT)  # gunicorn

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff.toml: pyflakes, pycodestyle (120 columns), import order, no private names imported across modules.
lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.reminders_bench
	$(PY) -m bench.web_bench
	$(PY) -m bench.sticker_bench
	$(PY) -m bench.phone_lesions

# Load bench on the stack (locust, loopback only): 1 and 2 analysis workers side by side; README, "Load bench".
bench-load: setup
	$(PY) -m bench.load $(LOAD_ARGS)

# The production-shaped stack (PostgreSQL, Redis, gunicorn, scheduler, Celery workers, S3 on moto): README.
stack: setup
	./deploy/stack.sh

# Fault drills on real processes (their own database and Redis db, emptied first): README, "Fault drills".
faults: setup
	$(PY) deploy/faults.py $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
