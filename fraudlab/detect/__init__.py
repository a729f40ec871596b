"""Detection: the one feature definition, the fraud model (LightGBM -> ONNX), its evaluation and its registry.

* :mod:`~fraudlab.detect.features`: row and stateful features, declared once, executed over a table, one record
  at a time, or as Flink SQL (pure numpy / pandas, imported by the Flink venv too);
* :mod:`~fraudlab.detect.model`: training, ONNX export, verified load and scoring (onnxruntime);
* :mod:`~fraudlab.detect.evaluate`: TSTR on real held-out rows, per-scenario metrics on held-out streams;
* :mod:`~fraudlab.detect.registry`: MLflow tracking, the ``fraud-detector`` registered model and its promotion gate.

Sub-modules are imported only when used, so importing the package loads nothing heavy.
"""
