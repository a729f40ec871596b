"""Synthetic data out: fraudlab's vectorised PaySim simulator and the copula synthesizer fitted on its rows.

* :mod:`~fraudlab.generate.paysim`: the simulator, calibrated to the bundled real rows;
* :mod:`~fraudlab.generate.synth`: the transaction synthesizer (SDV's Gaussian copula per segment, rules enforced);
* :mod:`~fraudlab.generate.baseline`: SDV's default Gaussian copula, the baseline ours is judged against.
"""

from fraudlab.generate.paysim import simulate
from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer, load_training_data, sample_in_chunks

__all__ = ["DEFAULT_MODEL", "TransactionSynthesizer", "load_training_data", "sample_in_chunks", "simulate"]
