# The two commands of the README: `make book` and `make test`. Both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Run a stage, print its wall time, keep its exit status.
define stage
start=$$(date +%s); echo "::: $(1)"; ( $(2) ); rc=$$?; echo "::: $(1): $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc
endef

.PHONY: install book test lint unit notebooks smoke html browser browser-test gpu-check clean

install: $(VENV)/.installed

# A virtual environment with the pinned torch/torchvision (constraints.txt) and the package in editable mode.
$(VENV)/.installed: pyproject.toml requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements.txt
	touch $@

# MathJax 3 ships with the book, so equations typeset without network: _config.yml points Sphinx's
# mathjax_path at book/_static/mathjax/, and the build's own extension (book/_ext/local_mathjax.py) fetches
# it from npm the first time; a plain `jupyter-book build .` does the same.

# Main job: re-execute every notebook in the active profile (outputs written back), then build the HTML book.
book: install
	$(BIN)/python -m tnt_rest_lite reproduce

# Tests: lint, unit tests, every notebook executed in the ci profile and, at the smoke scale, in the colab and
# full profiles (not written back), the book with -W, every page in a browser.
test:
	@$(call stage,install,$(MAKE) --no-print-directory install)
	@$(call stage,lint,$(MAKE) --no-print-directory lint)
	@$(call stage,unit tests,$(MAKE) --no-print-directory unit)
	@$(call stage,notebooks (ci profile),$(MAKE) --no-print-directory notebooks)
	@$(call stage,notebooks (colab and full profiles at the smoke scale),TNT_REST_SMOKE_MAX_BATCH_FULL=16 $(MAKE) --no-print-directory smoke)
	@$(call stage,book build,$(MAKE) --no-print-directory html)
	@$(call stage,browser test,$(MAKE) --no-print-directory browser-test)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: install
	$(BIN)/python -m pytest tests -q -p no:cacheprovider --ignore=tests/browser --ignore=tests/smoke

# nbmake runs each notebook top to bottom in a fresh kernel; a cell error fails the test. Results go to a
# temporary folder so a test run never overwrites the committed results/ of a real run.
# Checkpoints too: a run left by an earlier test run would be resumed instead of trained.
notebooks: install
	results=$$(mktemp -d) && checkpoints=$$(mktemp -d) && TNT_REST_PROFILE=ci TNT_REST_RESULTS=$$results \
		TNT_REST_CHECKPOINTS=$$checkpoints \
		$(BIN)/python -m pytest --nbmake --nbmake-timeout=900 -q -p no:cacheprovider --durations=0 notebooks

# The GPU profiles' code paths on this CPU: every notebook under colab and full at the smoke scale (one step
# per epoch of every run; models, image size, recipes, batch sizes, workers, seeds and AMP flag of the profile).
# make test caps full's training batches at 16 (TNT_REST_SMOKE_MAX_BATCH_FULL): at 112 px its batches of 256
# take minutes per step on two CPU cores; `make smoke` alone keeps them. The two profiles run side by side, one
# pytest-xdist worker and one torch thread each (a third thread on two cores slowed both profiles' kernels 2-5x).
smoke: install
	TNT_REST_SMOKE_THREADS_COLAB=1 TNT_REST_SMOKE_THREADS_FULL=1 $(BIN)/python -m pytest tests/smoke -n 2 --dist loadscope -q -p no:cacheprovider --durations=0

# On one GPU: every model's AMP training step at the colab and full batch sizes, one seed of each
# training table, the figure chapters' GPU path; writes results/<profile>/gpu_check.json with estimates.
gpu-check: install
	$(BIN)/python -m tnt_rest_lite gpu-check

html: install
	$(BIN)/jupyter-book build . -W --keep-going

# Headless Chromium for the browser test: Debian's package (Playwright drives it; it downloads no browser).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$TNT_REST_CHROMIUM" ] || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y -qq chromium >/dev/null || { echo "apt-get could not install chromium"; exit 1; }; \
		else \
			echo "The browser test needs Chromium: run 'sudo apt-get install chromium' (Debian/Ubuntu), or set"; \
			echo "TNT_REST_CHROMIUM to a Chromium/Chrome executable."; exit 1; \
		fi; }

# Every page of the built book in headless Chromium (title, images, typeset math, console, links);
# screenshots of the summary and one chapter go to _build/screenshots.
browser-test: install browser
	$(BIN)/python -m pytest tests/browser -q -p no:cacheprovider

clean:
	rm -rf _build
