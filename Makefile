# Two entry points do all set-up on a fresh machine: `make bench` and `make test`.
# `make help` lists every target and the variables they take.
## VENV: the virtual environment set-up makes and uses (default .venv)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE := --workflow-profile workflow/profiles/default
FMNIST_FILE := train-images-idx3-ubyte.gz
## CONFIG: the run's config for bench and report (default config/config.yaml)
CONFIG ?= config/config.yaml
## ARGS: extra Snakemake options for bench and smoke, e.g. ARGS="--cores 16 --dry-run"
ARGS ?=
## PYTHON_VERSION: the offline node's Python for wheelhouse, e.g. 3.12 (default: the venv's)
PYTHON_VERSION ?=
## WHEELHOUSE_PLATFORM: the node's newest wheel platform tag (default manylinux_2_28_<arch>)
WHEELHOUSE_PLATFORM ?=
## WHEELHOUSE_SKIP: packages the node has, left out of the wheelhouse, e.g. "numpy pandas"
WHEELHOUSE_SKIP ?=
## WHEELHOUSE: the wheelhouse folder (default wheelhouse)
WHEELHOUSE ?= wheelhouse
RUN_NAME = $(shell $(PY) -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' $(CONFIG))

.PHONY: setup dataset browser bench report test test-slurm test-wheelhouse smoke dry-run-full \
	wheelhouse clean help

setup: $(STAMP) dataset ## the venv with torch and this package; Fashion-MNIST

# torch/torchvision first, at their tested versions, so pip takes the local CPU-capable
# build; then this package, every dependency at the version tested (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch torchvision
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,cluster]'
	touch $(STAMP)

# Fashion-MNIST from Debian when we can install it; otherwise the data stage falls back
# to $$SIBLINGS_DATA and torchvision's downloader.
dataset: ## make sure Fashion-MNIST is here (Debian's package when root with apt)
	@if [ -f /usr/share/datasets/fashion-mnist/$(FMNIST_FILE) ] || \
	    [ -f "$${SIBLINGS_DATA:-data}/fashion-mnist/$(FMNIST_FILE)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian package dataset-fashion-mnist"; \
	    { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	    echo "apt could not install it: the data stage will try torchvision's downloader"; \
	else echo "fashion-mnist not installed locally: the data stage will try torchvision's downloader"; fi

# Killed at any point? Rerun the same command: `siblings run` clears the dead run's lock
# (never a live one's) and the profile reruns the jobs it left incomplete.
bench: setup ## set-up, then the benchmark of CONFIG (resumes after a kill; takes ARGS)
	SIBLINGS_RERUN="make bench CONFIG=$(CONFIG)$(if $(ARGS), ARGS='$(ARGS)')" \
	    $(VENV)/bin/siblings run $(CONFIG) $(ARGS)

# The run (finishing it first, as `make bench` would), then its self-contained HTML report:
# every figure with a caption quoting the run's settings.
report: bench ## bench, then its HTML report: reports/<run name>/report.html
	$(VENV)/bin/snakemake $(PROFILE) --configfile $(CONFIG) \
	    --report reports/$(RUN_NAME)/report.html

# Debian's chromium, for the test that opens the HTML report in a browser: installed when
# run as root with apt; otherwise that one test is skipped and says why.
browser: ## Debian's chromium for the report's browser test (when root with apt)
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian package chromium"; \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	    echo "apt could not install chromium: the browser test will be skipped"; \
	else echo "chromium not installed: the browser test will be skipped"; fi

test: setup browser ## set-up, then the test suite (includes a Snakemake run of the smoke config)
	$(PY) -m pytest -q

# config/smoke.yaml through workflow/profiles/slurm on a one-node SLURM cluster it starts
# (installing Debian's slurm and munge when root) and stops; see tests/slurm/check.py.
test-slurm: setup ## the smoke config on a one-node SLURM cluster it starts and stops
	$(PY) tests/slurm/check.py

# The offline route end to end, in a fresh venv that holds torch; see tests/wheelhouse/check.py.
test-wheelhouse: setup ## install from a fresh wheelhouse beside torch, run the smoke config
	$(PY) tests/wheelhouse/check.py

smoke: setup ## set-up, then the small smoke config (takes ARGS)
	$(VENV)/bin/siblings run config/smoke.yaml $(ARGS)

dry-run-full: setup ## list the jobs of config/full.yaml without running them
	$(VENV)/bin/snakemake -n --configfile config/full.yaml

# For an offline GPU node that has its site's PyTorch; see tools/wheelhouse.py.
wheelhouse: $(STAMP) ## wheels of this package and its non-torch dependencies, in WHEELHOUSE
	$(PY) tools/wheelhouse.py --python-version "$(PYTHON_VERSION)" \
	    --platform "$(WHEELHOUSE_PLATFORM)" --skip "$(WHEELHOUSE_SKIP)" $(WHEELHOUSE)

# The published reports (reports/default/, ...) are tracked by git and stay; of reports/
# only what .gitignore marks as generated goes. Outside git the two can't be told apart.
clean: ## remove results/, .snakemake/ and generated reports (git-tracked ones stay)
	rm -rf results .snakemake
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git clean -fdX -- reports; \
	else echo "not a git checkout: reports/ left alone (tracked reports can't be told apart)"; fi

help: ## list the targets and the variables they take
	@awk 'BEGIN { FS = ":.*## " } \
	    /^[a-z-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 } \
	    /^## [A-Z_]+: / { sub(/^## /, ""); name = $$0; sub(/:.*/, "", name); sub(/^[A-Z_]+: /, ""); \
	        vars = vars sprintf("  %-20s %s\n", name, $$0) } \
	    END { printf "\nVariables, e.g. make bench ARGS=\"--cores 16\":\n%s", vars }' $(MAKEFILE_LIST)
