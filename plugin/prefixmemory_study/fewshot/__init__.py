"""The few-shot classification study of section 6.1: its data (data.py), the end-to-end command (study.py), label
scoring (scoring.py), and Table 1 with the Pareto plots (report.py)."""
