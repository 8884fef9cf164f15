# Two commands do all the set-up themselves: `make demo` (the main job) and `make test` (the suite).
# Both create .venv with the pinned, tested versions (requirements/constraints.txt) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS := data,eval,train,search,geo,cards,explore,stac,onnx,dev
PYTEST_ARGS ?=
DEMO_ARGS ?=
EXPLORE_ARGS ?=

.PHONY: demo explore test lint clean

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) demo/run.py --output demo_output $(DEMO_ARGS)

# The explore web app on the demo's scene index (runs `make demo` first when there is none).
explore: $(STAMP)
	test -f demo_output/scenes.index/index.json || $(MAKE) demo
	$(VENV)/bin/rclip-hf explore --index demo_output/scenes.index --model demo_output/model $(EXPLORE_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check rclip_hf dataset_builders training_scripts model_cards benchmarks tests

clean:
	rm -rf $(VENV) demo_output build *.egg-info
