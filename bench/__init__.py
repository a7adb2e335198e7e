"""Roster's benchmarks: ``python -m bench.plan`` and ``python -m bench.sync``.

Other people share the machine, so every timing is reported next to a baseline measured
in the same run (see docs/benchmarks.md).
"""
