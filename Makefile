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
	$(PY) -m flake8 simplepose training testing tests benchmarks demo_image.py demo_video.py

# The whole job on the synthetic default, through the four real entry points (about 9 min on 2 CPU cores).
quickstart: venv
	@start=$$(date +%s); set -e; \
	$(PY) -m simplepose synthetic $(QS)/data/train --num-images 200 --seed 1; \
	$(PY) -m simplepose synthetic $(QS)/data/val --num-images 40 --seed 2; \
	$(PY) training/coco_masks_hdf5.py --annotations $(QS)/data/train/annotations.json \
		--images $(QS)/data/train/images --out $(QS)/train.h5; \
	$(PY) training/coco_masks_hdf5.py --annotations $(QS)/data/val/annotations.json \
		--images $(QS)/data/val/images --out $(QS)/val.h5; \
	$(PY) training/train_pose.py --config configs/quickstart.yaml --train $(QS)/train.h5 --val $(QS)/val.h5 \
		--run-dir $(QS)/run; \
	$(PY) testing/evaluation.py --weights $(QS)/run/model.keras --annotations $(QS)/data/val/annotations.json \
		--images $(QS)/data/val/images --scales 0.75 1 1.25 --flip --out $(QS)/eval; \
	$(PY) demo_image.py --weights $(QS)/run/model.keras --image $(QS)/data/val/images/000000000010.jpg \
		--out $(QS)/demo.png --json $(QS)/demo.json; \
	echo; echo "quickstart done in $$(( $$(date +%s) - start )) s: held-out synthetic val" \
		"AP $$($(PY) -c 'import json; print(round(json.load(open("$(QS)/eval/metrics.json"))["AP"], 3))')"; \
	echo "  model:   $(QS)/run/model.keras (training curves: $(QS)/run/losses.png)"; \
	echo "  metrics: $(QS)/eval/metrics.json"; \
	echo "  demo:    $(QS)/demo.png"

clean:
	rm -rf $(QS) .pytest_cache build *.egg-info
