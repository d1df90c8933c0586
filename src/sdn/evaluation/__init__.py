"""Evaluation: score trained generators (the metric registry), draw the figures, plots and reports,
and run the experiments that compare trainings (ablation, Table 1, the demo's scores). Imports nothing
here: `sdn sample` uses only the plots module and must not load evaluate or the metrics (tests/test_startup.py)."""
