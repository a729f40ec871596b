# fraudlab: two commands do all set-up on a fresh machine (python3, java 17+, maven):
#   make demo   - the main job on embedded defaults (local Kafka broker, bundled data)
#   make test   - lint and the whole test suite, real-broker tests included
# Both create .venv, install the package and resolve the Kafka jars once, and reuse them after.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fraudlab-installed
PYTEST_ARGS ?=

.PHONY: help install jars geoip demo test lint proto lock lab kernel notebooks broker-up broker-down mlflow clean

help:
	@echo "make demo     run the pipeline demo on a local Kafka broker"
	@echo "make test     lint + full test suite (starts its own broker)"
	@echo "make lab      JupyterLab with the registered 'fraudlab' kernel"
	@echo "make mlflow   the MLflow UI over the detector's runs and models (prints its URL)"
	@echo "make notebooks  re-execute the notebooks and keep their outputs"
	@echo "make proto    regenerate fraudlab/schema/proto from proto/fraud/v1"
	@echo "make lock     refresh constraints.txt from the current venv"

KERNEL := $(VENV)/share/jupyter/kernels/fraudlab/kernel.json
# JupyterLab refuses to start as root without this flag; containers and CI often run as root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || { echo "==> Creating the virtual environment $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> Installing fraudlab and its pinned dependencies into $(VENV)"
	@echo "    (the first time: about 3 GB of wheels, SDV brings PyTorch; 3-10 minutes depending on the network)"
	$(BIN)/python -m pip install --progress-bar on --disable-pip-version-check -c constraints.txt -e '.[test,proto,notebooks]'
	@touch $@

# The notebooks name this kernel; it lives inside the venv, so nothing is written to the user's home.
$(KERNEL): $(STAMP)
	@echo "==> Registering the Jupyter kernel 'Python (fraudlab)' in $(VENV)"
	$(BIN)/python -m ipykernel install --sys-prefix --name fraudlab --display-name "Python (fraudlab)"

install: $(STAMP)

jars: install
	@echo "==> Resolving the Apache Kafka jars from Maven Central into the cache (about 45 MB, once)"
	$(BIN)/fraudlab broker fetch

geoip: install
	@echo "==> Downloading the open GeoIP databases (DB-IP City Lite, IP-to-ASN) into the cache (about 85 MB, once)"
	$(BIN)/fraudlab geoip fetch

demo: jars
	$(BIN)/fraudlab demo

lint: install
	$(BIN)/ruff check .

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

# The suite and the committed notebooks as committed (nbval, default parameters), in one pytest run.
test: jars geoip lint $(KERNEL)
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests $(NOTEBOOKS) --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Re-execute every notebook at its default parameters and keep the outputs (what GitHub readers see), stored in
# the form JupyterLab saves, so opening a notebook does not modify it.
notebooks: jars $(KERNEL)
	cd notebooks && for nb in $(notdir $(NOTEBOOKS)); do \
		../$(BIN)/papermill --cwd . --kernel fraudlab "$$nb" "$$nb" || exit 1; done
	$(BIN)/python -m fraudlab.notebook normalize $(NOTEBOOKS)

proto: install
	$(BIN)/python -m fraudlab.schema.protogen

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^fraudlab' > constraints.txt

kernel: $(KERNEL)

lab: jars $(KERNEL)
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

broker-up: jars
	$(BIN)/fraudlab broker up

broker-down: install
	$(BIN)/fraudlab broker down

# The local MLflow tracking server on the cache's store (where training runs are logged); `fraudlab mlflow down` stops it.
mlflow: install
	$(BIN)/fraudlab mlflow up

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
