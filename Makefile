.PHONY: check lint typecheck test
PY ?= python

check: lint typecheck test

lint:
	$(PY) -m ruff check sleepd workers tests

typecheck:
	$(PY) -m mypy

test:
	SLEEPD_REQUIRE_SERVICES=$${SLEEPD_REQUIRE_SERVICES:-0} $(PY) -m pytest -q
