"""The comparison report: which agent classes misgeneralize, how consistently, how sure we are.

``build_report(paths, out)`` reads only from the run store (run.json, metrics.jsonl, probes/*.json,
cached rollouts) and writes ``report.html`` (self-contained, figures embedded), ``report.md``,
``results.csv`` and ``figures/*.png``.
"""

from __future__ import annotations

from misgen.report.build import build_report

__all__ = ["build_report"]
