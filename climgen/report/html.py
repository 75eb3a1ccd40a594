"""A self-contained HTML page for an evaluation report (inline CSS, no JavaScript, no CDN).

:func:`render_html` turns the machine-readable report (the dict that ``metrics.json``
holds, see :meth:`climgen.report.evaluate.EvaluationReport.to_dict`) and a list of figures
per variable into ``index.html``. Figures are PNG files next to the page, linked by relative
path, so the folder can be zipped, mailed or served as is. All text from the data (variable
names, attributes, file paths) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Figure", "Table", "Section", "render_html", "render_page", "STATUS_COLORS"]

STATUS_COLORS = {"matches": "#d8f0d2", "close": "#fbe7b5", "differs": "#f6c9c4"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.overall { font-size: 1.15em; padding: 0.6em 1em; border-radius: 4px; display: inline-block; }
.legend span { padding: 0.1em 0.5em; margin-right: 0.5em; border-radius: 3px; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 900px; }
.prov td:first-child { font-weight: 600; white-space: nowrap; }
.small { font-size: 0.85em; color: #555; }
"""


@dataclass(frozen=True)
class Figure:
    """One figure of the report: a title, the PNG's file name relative to the page, and a
    short paragraph telling the reader how to read it."""

    title: str
    filename: str
    how_to_read: str


@dataclass(frozen=True)
class Table:
    """A plain table of a task page: column names, rows of cells (numbers are shown with
    three significant digits) and an optional caption. ``highlight`` gives, per row, a
    status key of :data:`STATUS_COLORS` (or ``""``) to colour the row."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""
    highlight: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """One section of a task page (gap filling, downscaling, translation): a heading,
    paragraphs of plain text (escaped), tables, then figures."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        return f"{value:.3g}"
    return _e(value)


def _provenance(provenance: dict[str, Any]) -> str:
    rows = []
    for key, value in provenance.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        rows.append(f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>")
    return '<table class="prov">' + "".join(rows) + "</table>"


def _distance_table(distances: dict[str, dict[str, Any]]) -> str:
    head = (
        "<tr><th>distance</th><th>value</th><th>noise floor</th><th>value / floor</th>"
        "<th>verdict</th><th>what it measures</th></tr>"
    )
    rows = []
    for name, d in distances.items():
        color = STATUS_COLORS.get(d.get("status", ""), "#ffffff")
        rows.append(
            "<tr>"
            f"<td>{_e(name)}</td>"
            f'<td class="num">{_num(d.get("value"))}</td>'
            f'<td class="num">{_num(d.get("floor"))}</td>'
            f'<td class="num">{_num(d.get("ratio"))}</td>'
            f'<td style="background:{color}">{_e(d.get("verdict", ""))}</td>'
            f'<td class="small">{_e(d.get("description", ""))}</td>'
            "</tr>"
        )
    return "<table>" + head + "".join(rows) + "</table>"


def _color(d: dict[str, Any]) -> str:
    return STATUS_COLORS.get(d.get("status", ""), "#ffffff")


def _reference_rows_table(var: dict[str, Any]) -> str:
    """Ratio to the floor of each distance for the model and each reference row."""
    rows_ = var["reference_rows"]
    head = (
        "<tr><th>distance (value / floor)</th><th>model</th>"
        + "".join(f"<th>{_e(r)}</th>" for r in rows_)
        + "</tr>"
    )
    rows = []
    for name, d in var.get("distances", {}).items():
        cells = [d] + [rows_[r].get(name, {}) for r in rows_]
        rows.append(
            f"<tr><td>{_e(name)}</td>"
            + "".join(
                f'<td class="num" style="background:{_color(c)}">{_num(c.get("ratio"))}</td>'
                for c in cells
            )
            + "</tr>"
        )
    memo = var.get("memorisation") or {}
    note = "".join(f"<li>memorisation ratio of {_e(k)}: {_num(v)}</li>" for k, v in memo.items())
    explain = (
        '<p class="small">The training data scored against the same reference is what a '
        "perfect emulator of the training set gets; the IAAFT surrogate (same power spectrum "
        "and row-wise value distribution, random phases) is what calibration reaches without "
        "learning structure. A model row is informative where it beats the surrogate. "
        "Memorisation ratio: distance to the nearest training field over all periodic shifts, "
        "relative to that of the reference fields (≈ 1 new fields, ≪ 1 copies).</p>"
    )
    return (
        "<table>"
        + head
        + "".join(rows)
        + "</table>"
        + (f"<ul>{note}</ul>" if note else "")
        + explain
    )


def _moments_table(moments: dict[str, dict[str, float]]) -> str:
    keys = ["mean", "std", "skewness", "kurtosis"]
    head = "<tr><th></th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"
    rows = []
    for which in ("generated", "reference"):
        values = moments.get(which, {})
        cells = "".join(f'<td class="num">{_num(values.get(k))}</td>' for k in keys)
        rows.append(f"<tr><td>{which}</td>{cells}</tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def _figures(figures: list[Figure]) -> str:
    parts = []
    for fig in figures:
        parts.append(
            "<figure>"
            f"<h3>{_e(fig.title)}</h3>"
            f'<img src="{_e(fig.filename)}" alt="{_e(fig.title)}">'
            f"<figcaption><b>How to read this.</b> {_e(fig.how_to_read)}</figcaption>"
            "</figure>"
        )
    return "".join(parts)


def _table(table: Table) -> str:
    head = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in table.columns) + "</tr>"
    rows = []
    for i, row in enumerate(table.rows):
        status = table.highlight[i] if i < len(table.highlight) else ""
        style = f' style="background:{STATUS_COLORS[status]}"' if status else ""
        cells = "".join(
            f'<td class="num">{_num(v)}</td>'
            if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            else f"<td>{_e(v)}</td>"
            for v in row
        )
        rows.append(f"<tr{style}>{cells}</tr>")
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    return "<table>" + caption + head + "".join(rows) + "</table>"


def _write_page(title: str, body: list[str], path: str | Path) -> Path:
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def render_page(
    title: str,
    sections: list[Section],
    path: str | Path,
    *,
    summary: str = "",
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a task page (gap filling, downscaling, translation) to ``path``.

    The page has the same look as the evaluation report: a title, an optional one-paragraph
    ``summary``, the sections in order (paragraphs, tables, figures with their "how to read
    this" caption) and the provenance table last. Figures are PNG files next to ``path``.
    """
    body = [f"<h1>{_e(title)}</h1>"]
    if summary:
        body.append(f'<p class="overall" style="background:#eef3fb">{_e(summary)}</p>')
    for section in sections:
        body.append(f"<h2>{_e(section.heading)}</h2>")
        body.extend(f"<p>{_e(p)}</p>" for p in section.paragraphs)
        body.extend(_table(t) for t in section.tables)
        body.append(_figures(list(section.figures)))
    if provenance:
        body.append("<h2>Provenance</h2>")
        body.append(_provenance(provenance))
    return _write_page(title, body, path)


def render_html(
    report: dict[str, Any],
    figures: dict[str, list[Figure]],
    path: str | Path,
    *,
    title: str = "climgen evaluation report",
) -> Path:
    """Write the report page to ``path`` and return it.

    Parameters
    ----------
    report : the machine-readable report: keys ``"matches"`` (bool), ``"provenance"``
        (dict of str → value), ``"factor"`` and ``"variables"`` (name → dict with
        ``"distances"`` (name → value/floor/ratio/verdict/status/description), ``"moments"``,
        ``"units"``, ``"long_name"``, ``"grid"`` …), as written to metrics.json.
    figures : variable name → figures drawn for it (PNG files next to ``path``).
    """
    factor = report.get("factor", 2.0)
    close = report.get("close_factor", 5.0)
    overall = bool(report.get("matches"))
    verdict = (
        "The generated data match the reference on every distance (within "
        f"{factor:g}× the noise floor)."
        if overall
        else "The generated data differ from the reference on at least one distance "
        f"(more than {factor:g}× the noise floor); see the red rows."
    )
    overall_color = STATUS_COLORS["matches" if overall else "differs"]
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="overall" style="background:{overall_color}">{_e(verdict)}</p>',
        "<h2>Provenance</h2>",
        _provenance(report.get("provenance", {})),
        "<h2>How the verdicts are made</h2>",
        "<p>Each distance d(generated, reference) is shown next to its <b>noise floor</b>: the "
        "same distance between two halves of the reference data (averaged over 5 splits into "
        "halves made of contiguous blocks), i.e. what two honest samples of the same climate "
        "differ by. "
        f"A distance <b>matches</b> when d ≤ {factor:g} × floor, is <b>close</b> up to "
        f"{close:g} × floor, and <b>differs</b> beyond.</p>"
        '<p class="legend">'
        f'<span style="background:{STATUS_COLORS["matches"]}">matches</span>'
        f'<span style="background:{STATUS_COLORS["close"]}">close</span>'
        f'<span style="background:{STATUS_COLORS["differs"]}">differs</span></p>',
    ]
    for name, var in report.get("variables", {}).items():
        long_name = var.get("long_name") or name
        units = var.get("units") or ""
        status = "matches" if var.get("matches") else "differs"
        body.append(f'<h2 id="{_e(name)}">{_e(name)}: {_e(long_name)}</h2>')
        body.append(
            f'<p class="small">units: {_e(units or "–")} · grid: {_e(var.get("grid", "?"))} · '
            f"shape (y, x): {_e(tuple(var.get('shape', ())))} · samples: generated "
            f"{_e(var.get('n_generated', '?'))}, reference {_e(var.get('n_reference', '?'))} · "
            f'overall: <span style="background:{STATUS_COLORS[status]}">{status}</span></p>'
        )
        body.append(_distance_table(var.get("distances", {})))
        if var.get("reference_rows"):
            body.append(
                "<h3>Reference rows: the model beside the training data and a surrogate</h3>"
            )
            body.append(_reference_rows_table(var))
        if "moments" in var:
            body.append("<h3>Moments (area-weighted)</h3>")
            body.append(_moments_table(var["moments"]))
        body.append(_figures(figures.get(name, [])))
    return _write_page(title, body, path)
