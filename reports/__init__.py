"""Read a finished run: its summary, report, model card, prediction analysis and plots; never
run one."""
