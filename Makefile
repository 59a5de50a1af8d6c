# hidim — two commands do all set-up on a fresh machine:
#   make demo   set up, then run the whole pipeline on the built-in phantom
#   make test   set up, then run the full test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hidim-installed
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng dicom3tools dcmtk chromium
# a local PACS for the DICOMweb tests; installed on its own so a failure cannot block the rest
APT_PACS := orthanc orthanc-dicomweb
DEMO_OUT ?= demo-out
PYTEST_ARGS ?= -n 2

.PHONY: demo test setup system-deps lint bench clean

demo: setup
	$(BIN)/hidim demo --out $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: system-deps $(STAMP)

# Debian packages: installed when we can (root + apt-get); tests that need them say so and skip otherwise.
system-deps:
	@missing=""; \
	for b in tesseract dciodvfy dcmdump chromium Orthanc; do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages (missing:$$missing)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null) \
	      || echo "warning: apt-get could not install $(APT_PACKAGES); OCR/dciodvfy/browser tests will skip"; \
	    if ! command -v Orthanc >/dev/null 2>&1; then \
	      nostart=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; nostart=1; }; \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACS) >/dev/null \
	        || echo "warning: apt-get could not install $(APT_PACS); the DICOMweb tests will skip"; \
	      [ -z "$$nostart" ] || rm -f /usr/sbin/policy-rc.d; \
	    fi; \
	  else echo "warning: cannot install$$missing (need root + apt-get); the tests that need them will skip"; fi; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
