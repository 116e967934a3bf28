"""dsollama's benchmarks: ``python -m benchmarks`` runs them and writes BENCHMARKS.md.

Each ``bench_*`` module has ``run(...) -> dict`` and also runs on its own as a script.
"""
