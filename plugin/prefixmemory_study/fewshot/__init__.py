"""The few-shot classification study of section 6.1: its data (data.py), the runs and their training (runs.py), the
evaluation of every checkpoint (evaluate.py), label scoring (scoring.py), Table 1 with the Pareto plots (report.py),
and the end-to-end command (cli.py)."""
