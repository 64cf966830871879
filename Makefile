# simplepose: `make quickstart` (synthetic data -> train -> evaluate -> demo) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
QS := quickstart
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: venv test test-slow test-all quickstart bench lint clean

$(VENV)/.installed: setup.cfg requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

test: venv lint
	$(PY) -m pytest -m "not slow" -q

test-slow: venv
	$(PY) -m pytest -m slow -q

test-all: venv
	$(PY) -m pytest -q

lint: venv
	$(PY) -m flake8 simplepose training testing tests benchmarks demo_image.py

quickstart: venv
	$(PY) -m simplepose.data.synthetic $(QS)/data/train --num-images 200 --seed 1
	$(PY) -m simplepose.data.synthetic $(QS)/data/val --num-images 40 --seed 2
	$(PY) training/coco_masks_hdf5.py --annotations $(QS)/data/train/annotations.json \
		--images $(QS)/data/train/images --out $(QS)/train.h5
	$(PY) training/coco_masks_hdf5.py --annotations $(QS)/data/val/annotations.json \
		--images $(QS)/data/val/images --out $(QS)/val.h5
	@echo "quickstart: synthetic data in $(QS)/data, HDF5 in $(QS)/train.h5 and $(QS)/val.h5"

clean:
	rm -rf $(QS) .pytest_cache build *.egg-info
