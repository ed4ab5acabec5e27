"""Chaos and load runs of the call queue, against the Exotel simulator.

* ``python -m chaos`` (``make chaos``): a chaos campaign (:mod:`chaos.runner`) with a
  verdict from the simulator's ground truth (:mod:`chaos.verdict`); ``--short`` for CI.
* ``python -m chaos.load``: a load measurement (:mod:`chaos.load`): a 20,000-call burst
  enqueued, then thousands of StatusCallbacks per second against a real receiver.

Python API::

    from chaos import ChaosConfig, run_chaos

    report = run_chaos(ChaosConfig.short())
    print(report.render())
    assert report.ok
"""

from chaos.runner import ChaosConfig, ChaosReport, run_chaos
from chaos.verdict import Check

__all__ = ["ChaosConfig", "ChaosReport", "Check", "run_chaos"]
