"""Roster's benchmarks: ``python -m bench.plan`` and ``python -m bench.sync``; at a million
users ``python -m bench.million`` (with ``bench.staticscim``, a bench-only list server),
``python -m bench.profile`` for Prefect's overhead and Roster's own costs, and
``python -m bench.incremental`` for an incremental sync against a full one.

Other people share the machine, so every timing is reported next to a baseline measured
in the same run (see docs/benchmarks.md).
"""
