# The two Quick-start commands (`make demo`, `make test`) create the environment themselves.
SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
# pyenv provides the interpreter named in .python-version; fall back to whatever python3.10 is on PATH.
BASE_PYTHON ?= $(shell p="$$HOME/.pyenv/versions/$(PYTHON_VERSION)/bin/python"; [ -x "$$p" ] && echo "$$p" || command -v python3.10)
UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace

.PHONY: demo test env lock clean

demo: $(STAMP)
	$(VENV)/bin/finetune demo --workspace $(WORKSPACE)

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests

env: $(STAMP)

# The venv keeps pip: TFX installs module files with pip at run time.
# --compile-bytecode writes every installed module's .pyc now: where PYTHONDONTWRITEBYTECODE is
# set, Python would otherwise compile TensorFlow, TFX and Beam from source in every process
# (importing the local runner took 15.2 s, 5.8 s with the .pyc files).
$(STAMP): requirements.lock setup.py Makefile
	@test -n "$(BASE_PYTHON)" || { echo "Python $(PYTHON_VERSION) not found: install it with 'pyenv install $(PYTHON_VERSION)'"; exit 1; }
	rm -rf $(VENV)
	$(BASE_PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install --python $(VENV)/bin/python --no-deps --compile-bytecode -r requirements.lock
	$(VENV)/bin/uv pip install --python $(VENV)/bin/python --no-deps -e .
	touch $(STAMP)

# Regenerate the lock from setup.py's requirements (needs only the venv's uv).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_36 --no-emit-package tfx-finetune -o requirements.lock

clean:
	rm -rf $(VENV) $(WORKSPACE)
