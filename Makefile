# Two entry points do all set-up on a fresh machine: `make bench` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE := --workflow-profile workflow/profiles/default
FMNIST_FILE := train-images-idx3-ubyte.gz
CONFIG ?= config/config.yaml
RUN_NAME = $(shell $(PY) -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' $(CONFIG))

.PHONY: setup dataset browser bench report test test-slurm smoke dry-run-full clean

setup: $(STAMP) dataset

# torch/torchvision first, pinned, so pip takes the local CPU-capable build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

# Fashion-MNIST from Debian when we can install it; otherwise the data stage falls back
# to $$SIBLINGS_DATA and torchvision's downloader.
dataset:
	@if [ -f /usr/share/datasets/fashion-mnist/$(FMNIST_FILE) ] || \
	    [ -f "$${SIBLINGS_DATA:-data}/fashion-mnist/$(FMNIST_FILE)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian package dataset-fashion-mnist"; \
	    { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	    echo "apt could not install it: the data stage will try torchvision's downloader"; \
	else echo "fashion-mnist not installed locally: the data stage will try torchvision's downloader"; fi

# Killed at any point? Rerun the same command: siblings.run clears the dead run's lock
# (never a live one's) and the profile reruns the jobs it left incomplete.
bench: setup
	SIBLINGS_RERUN="make bench CONFIG=$(CONFIG)" $(PY) -m siblings.run $(PROFILE) --configfile $(CONFIG)

# The run (finishing it first, as `make bench` would), then its self-contained HTML report:
# every figure with a caption quoting the run's settings.
report: bench
	$(VENV)/bin/snakemake $(PROFILE) --configfile $(CONFIG) \
	    --report reports/$(RUN_NAME)/report.html

# Debian's chromium, for the test that opens the HTML report in a browser: installed when
# run as root with apt; otherwise that one test is skipped and says why.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian package chromium"; \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	    echo "apt could not install chromium: the browser test will be skipped"; \
	else echo "chromium not installed: the browser test will be skipped"; fi

test: setup browser
	$(PY) -m pytest -q

# config/smoke.yaml through workflow/profiles/slurm on a one-node SLURM cluster it starts
# (installing Debian's slurm and munge when root) and stops; see tests/slurm/check.py.
test-slurm: setup
	$(PY) tests/slurm/check.py

smoke: setup
	$(PY) -m siblings.run $(PROFILE) --configfile config/smoke.yaml

dry-run-full: setup
	$(VENV)/bin/snakemake -n --configfile config/full.yaml

clean:
	rm -rf results reports/*/ .snakemake
