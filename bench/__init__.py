"""Plop's benchmarks: named scenarios run against a ``plop serve`` process started for
the run, with the load generated in other processes, compared with a raw FastAPI
baseline measured in the same run.

``python -m bench SCENARIO`` (see ``bench.cli``) writes JSON, a Markdown table and PNG
plots to ``bench/results/``.
"""
