.PHONY: check lint typecheck test faults
PY ?= python

check: lint typecheck test

lint:
	$(PY) -m ruff check sleepd workers tests

typecheck:
	$(PY) -m mypy

test:
	SLEEPD_REQUIRE_SERVICES=$${SLEEPD_REQUIRE_SERVICES:-0} $(PY) -m pytest -q

# the team-mode fault run alone (issue 9; also part of `test`): SLEEPD_FAULT_KILLS=20 for a short one
faults:
	SLEEPD_REQUIRE_SERVICES=$${SLEEPD_REQUIRE_SERVICES:-0} $(PY) -m pytest -q -s -m faults
