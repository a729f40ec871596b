"""Continuous training as plain functions: the DVC stages' train and evaluate steps, and what follows a
``dvc repro`` (register the candidate with its data version, the promotion gate, the announcement to the running
scoring job). ``dvc.yaml`` and the Airflow DAG only call them through ``fraudlab pipeline ...``."""
