# fraudlab: two commands do all set-up on a fresh machine (python3, java 17+, maven):
#   make demo   - the main job on embedded defaults (local Kafka broker, bundled data)
#   make test   - lint and the whole test suite, real-broker tests included
# Both create .venv, install the package and resolve the Kafka jars once, and reuse them after.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fraudlab-installed
PYTEST_ARGS ?=

.PHONY: help install jars demo test lint proto lock lab kernel notebooks broker-up broker-down clean

help:
	@echo "make demo     run the pipeline demo on a local Kafka broker"
	@echo "make test     lint + full test suite (starts its own broker)"
	@echo "make lab      JupyterLab with the registered 'fraudlab' kernel"
	@echo "make notebooks  re-execute the notebooks and keep their outputs"
	@echo "make proto    regenerate fraudlab/proto from proto/fraud/v1"
	@echo "make lock     refresh constraints.txt from the current venv"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

install: $(STAMP)

jars: install
	$(BIN)/fraudlab broker fetch

demo: jars
	$(BIN)/fraudlab demo

lint: install
	$(BIN)/ruff check .

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

# The suite and the committed notebooks as committed (nbval, default parameters), in one pytest run.
test: jars lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests $(NOTEBOOKS) --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Re-execute every notebook at its default parameters and keep the outputs (what GitHub readers see).
notebooks: install jars
	cd notebooks && for nb in $(notdir $(NOTEBOOKS)); do \
		../$(BIN)/papermill --cwd . --kernel python3 "$$nb" "$$nb" || exit 1; done

proto: install
	$(BIN)/python -m fraudlab.protogen

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^fraudlab' > constraints.txt

kernel: install
	$(BIN)/python -m ipykernel install --user --name fraudlab --display-name "Python (fraudlab)"

lab: kernel jars
	$(BIN)/jupyter lab notebooks/

broker-up: jars
	$(BIN)/fraudlab broker up

broker-down: install
	$(BIN)/fraudlab broker down

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
