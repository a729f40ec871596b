# fraudlab: two commands do all set-up on a fresh machine (python3, java 17+, maven):
#   make demo   - the main job on embedded defaults (local Kafka broker, bundled data)
#   make test   - lint and the whole test suite, real-broker tests included
# Both create .venv, install the package and resolve the Kafka jars once, and reuse them after.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fraudlab-installed
# The PyFlink job's own venv (PyFlink pins old numpy/pandas/protobuf); fraudlab goes into it without dependencies.
FLINK_VENV ?= .venv-flink
FLINK_BIN := $(FLINK_VENV)/bin
FLINK_STAMP := $(FLINK_VENV)/.fraudlab-installed
# What the job imports; the stamp is written only once they all import.
FLINK_IMPORTS := import pyflink, onnxruntime, maxminddb, confluent_kafka, fraudlab.detect.features, fraudlab.enrich.geoip
# Airflow's own venv (its dependency tree clashes with MLflow's); fraudlab is not installed into it: the DAG only runs
# shell commands in $(VENV). The stamp is written once Airflow and the BashOperator the DAG uses import.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_BIN := $(AIRFLOW_VENV)/bin
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.fraudlab-installed
AIRFLOW_IMPORTS := import airflow.sdk, airflow.providers.standard.operators.bash
PYTEST_ARGS ?=

.PHONY: help install flink-venv airflow-venv jars geoip demo test lint proto lock lock-flink lock-airflow lab kernel \
	notebooks broker-up broker-down mlflow flink airflow gateway clean

help:
	@echo "make demo     run the pipeline demo on a local Kafka broker"
	@echo "make test     lint + full test suite (starts its own broker)"
	@echo "make lab      JupyterLab with the registered 'fraudlab' kernel"
	@echo "make mlflow   the MLflow UI over the detector's runs and models (prints its URL)"
	@echo "make flink    a local standalone Flink cluster (prints its web UI's URL)"
	@echo "make airflow  Airflow standalone with the continuous-training DAG (prints its URL and login)"
	@echo "make notebooks  re-execute the notebooks and keep their outputs"
	@echo "make gateway  build the Go ingestion gateway (fraudlab serve --engine go runs it)"
	@echo "make proto    regenerate fraudlab/schema/proto and gateway/internal/fraudpb from proto/fraud/v1"
	@echo "make lock     refresh constraints.txt from the current venv"
	@echo "make lock-flink  re-resolve requirements-flink.txt and refresh constraints-flink.txt"
	@echo "make lock-airflow  re-resolve requirements-airflow.txt and refresh constraints-airflow.txt"

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

$(FLINK_STAMP): pyproject.toml requirements-flink.txt constraints-flink.txt
	@if test -x $(FLINK_BIN)/python; then echo "==> Updating the Flink venv $(FLINK_VENV) (pinned by constraints-flink.txt)"; \
	else echo "==> Creating the Flink venv (about 920 MB, once, ~2 min)"; $(PYTHON) -m venv $(FLINK_VENV); fi
	$(FLINK_BIN)/python -m pip install --progress-bar on --disable-pip-version-check -c constraints-flink.txt \
		-r requirements-flink.txt
	$(FLINK_BIN)/python -m pip install --disable-pip-version-check --quiet --no-deps -e .
	$(FLINK_BIN)/python -c "$(FLINK_IMPORTS)"
	@touch $@

flink-venv: $(FLINK_STAMP)

$(AIRFLOW_STAMP): requirements-airflow.txt constraints-airflow.txt
	@if test -x $(AIRFLOW_BIN)/python; then echo "==> Updating the Airflow venv $(AIRFLOW_VENV) (pinned by constraints-airflow.txt)"; \
	else echo "==> Creating the Airflow venv (about 300 MB, once, ~1.5 min)"; $(PYTHON) -m venv $(AIRFLOW_VENV); fi
	$(AIRFLOW_BIN)/python -m pip install --progress-bar on --disable-pip-version-check -c constraints-airflow.txt \
		-r requirements-airflow.txt
	$(AIRFLOW_BIN)/python -c "$(AIRFLOW_IMPORTS)"
	@touch $@

airflow-venv: $(AIRFLOW_STAMP)

jars: install
	@echo "==> Resolving the Apache Kafka jars from Maven Central into the cache (about 45 MB, once)"
	$(BIN)/fraudlab broker fetch

geoip: install
	@echo "==> Downloading the open GeoIP databases (DB-IP City Lite, IP-to-ASN) into the cache (about 85 MB, once)"
	$(BIN)/fraudlab geoip fetch

# The Go ingestion gateway (gateway/bin/fraudlab-gateway, untracked), with the machine's Go; modules come from the Go
# module proxy into Go's own cache, checked against the committed go.sum. Incremental: about a second when up to date.
gateway: install
	@echo "==> Building the Go ingestion gateway (the first time: its modules from the Go proxy, about a minute)"
	$(BIN)/fraudlab gateway build

demo: jars geoip flink-venv
	$(BIN)/fraudlab demo

lint: install
	$(BIN)/ruff check .

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# 07 runs the whole promotion loop (Flink, two Airflow runs, about 6 minutes): its papermill test in
# tests/integration/test_notebooks.py executes it once and asserts on what it recorded, so nbval does not run it again.
NBVAL_NOTEBOOKS := $(filter-out notebooks/07_continuous_training.ipynb,$(NOTEBOOKS))

# The suite and the committed notebooks as committed (nbval, default parameters), in one pytest run.
test: jars geoip flink-venv airflow-venv gateway lint $(KERNEL)
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests $(NBVAL_NOTEBOOKS) --nbval-lax \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg

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

# Resolve requirements-flink.txt afresh (the newest versions it allows, no old constraints) in a new Flink venv and
# freeze that venv; the result is what `make flink-venv` installs everywhere (it then finishes this venv too).
lock-flink:
	rm -rf $(FLINK_VENV)
	@echo "==> Creating the Flink venv (about 920 MB, once, ~2 min)"
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_BIN)/python -m pip install --progress-bar on --disable-pip-version-check -r requirements-flink.txt
	$(FLINK_BIN)/python -m pip freeze | grep -v '^fraudlab' > constraints-flink.txt
	$(MAKE) flink-venv

# The same for the Airflow venv: resolve requirements-airflow.txt afresh and freeze it into constraints-airflow.txt.
lock-airflow:
	rm -rf $(AIRFLOW_VENV)
	@echo "==> Creating the Airflow venv (about 300 MB, once, ~1.5 min)"
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_BIN)/python -m pip install --progress-bar on --disable-pip-version-check -r requirements-airflow.txt
	$(AIRFLOW_BIN)/python -m pip freeze > constraints-airflow.txt
	$(MAKE) airflow-venv

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

# A standalone Flink cluster (JobManager + one TaskManager) from the Flink venv's PyFlink, left running;
# `fraudlab flink down` stops it.
flink: install flink-venv
	$(BIN)/fraudlab flink up

# Airflow standalone (scheduler, DAG processor, triggerer, API server and UI) from the Airflow venv, left running;
# `fraudlab airflow down` stops it. Its home (metadata DB, logs, the admin password) is <cache>/airflow.
airflow: install airflow-venv
	$(BIN)/fraudlab airflow up

clean:
	rm -rf $(VENV) $(FLINK_VENV) $(AIRFLOW_VENV) build *.egg-info .pytest_cache .ruff_cache
