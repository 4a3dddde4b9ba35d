"""Diagnostics of the paper's mechanism (sections 4.2, 5.3, appendix B) for any supported model and PEFT adapter.

``prefixmemory-diagnose spectrum|cka|tradeoff|attention`` (cli.py, commands.py); the measurements are in probes.py
(forward hooks on the real modules), the maths in metrics.py, the figures in plots.py, models and adapters are
loaded by loading.py.
"""

from .metrics import covariance_spectrum, effective_rank, linear_cka, pareto_front

__all__ = ["covariance_spectrum", "effective_rank", "linear_cka", "pareto_front"]
