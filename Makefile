# Crier's entry points. `make demo` runs the product on its defaults; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ASSETS := node_modules/.installed

.PHONY: demo test bench mutation services browser screenshots venv migrate schema clean

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

# The admin's front-end libraries, from the npm registry, served as static files.
$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(ASSETS)

venv: $(STAMP) $(ASSETS)

services:
	./scripts/services.sh

migrate: venv services
	CRIER_ENV=development $(PY) manage.py migrate --noinput

demo: venv services
	$(PY) scripts/demo.py

browser:
	./scripts/browser.sh

test: venv services browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Pictures of the admin's main pages for the docs, taken by the browser tests.
screenshots: venv services browser
	CRIER_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/browser

schema: venv
	DJANGO_SETTINGS_MODULE=settings.test $(PY) manage.py spectacular --validate --fail-on-warn --file /tmp/crier-schema.yaml

clean:
	rm -rf $(VENV) var staticfiles node_modules

# Mutation testing of the engine's critical modules (docs/mutation.md): long, so not part of `make test`.
mutation: venv services
	$(PY) -m pip install --quiet -r requirements/mutation.txt
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

bench: venv services
	$(PY) -m bench $(BENCH_ARGS)
