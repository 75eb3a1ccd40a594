"""Evaluation reports: distances with noise floors, figures, an HTML page and metrics.json.

:func:`evaluate` compares generated with reference fields and returns an
:class:`EvaluationReport` (``.summary()``, ``.to_json(path)``, ``.to_html(dir)``).
The figures live in :mod:`climgen.report.plots` (matplotlib, imported when first drawn)
and the page in :mod:`climgen.report.html`.
"""

from climgen.report.evaluate import (
    Distance,
    EvaluationReport,
    VariableResult,
    classify,
    evaluate,
)

__all__ = ["evaluate", "EvaluationReport", "VariableResult", "Distance", "classify"]
