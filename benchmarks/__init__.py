"""qsem benchmarks: qsem against an anchor on the same work, timed in the same run.

Run ``python benchmarks/run_all.py`` (or ``make bench``); see ``docs/benchmarks.md``.
"""
