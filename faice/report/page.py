"""Rendering a report: the self-contained HTML page (sortable table, inlined images) and its markdown
twin, from the parts `build_report` gathered."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faice.figures import md_table
from faice.report.wandb_links import _wandb_lines
from faice.results import (
    _fmt,
    _metric_mode,
    format_mean_std,
    seed_table,
    short_diff,
    verdict,
)

# ---------------------------------------------------------------------------- the page


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _cell_text(value: Any) -> str:
    """A results.csv cell as csv.DictReader reads it back (the page's data-value): str(), None empty."""
    return "" if value is None else str(value)


SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = th.getAttribute("aria-sort") !== "ascending";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
        var nx = x.trim() === "" ? NaN : Number(x), ny = y.trim() === "" ? NaN : Number(y);
        var empty = (x === "") - (y === "");
        if (empty) return empty;
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);  // "752e3_00001" is not a number
        return up ? c : -c;
      });
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; }
table { border-collapse: collapse; font-size: 12px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; cursor: pointer; position: sticky; top: 0; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
td.text { text-align: left; } .wrap { overflow-x: auto; } img { max-width: 100%; } figure { display: inline-block; margin: 0.5em; }
.note { color: #555; font-size: 12px; } pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; }
"""


def _html_table(table: list[dict], cls: str = "sortable", id_: str = "results") -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in table[0]) if table else ""
    body = []
    for cells in table:
        tds = []
        for value in cells.values():
            exact = _cell_text(value)
            kind = "num" if isinstance(value, int | float) and not isinstance(value, bool) else "text"
            tds.append(f'<td class="{kind}" data-value="{html.escape(exact)}" title="{html.escape(exact)}">'
                       f"{html.escape(_fmt(value))}</td>")  # fmt: skip
        body.append("<tr>" + "".join(tds) + "</tr>")
    table = f'<table class="{cls}" id="{id_}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="wrap">{table}</div>'


def _figures_html(figures: list[tuple[str, Path]]) -> str:
    return "".join(
        f'<figure><img alt="{html.escape(c)}" src="{_data_uri(p)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for c, p in figures
    )


def _md_table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    return md_table(header, rows, _fmt)


@dataclass
class ReportParts:
    """What the page and its markdown twin show (figures as PNG paths in the output folder)."""

    name: str
    spec: dict
    ranked: list  # TrialRow, best first
    table: list[dict]  # results.csv cells of `ranked`
    curves: list[tuple[str, Path]]
    pareto: Path | None
    swept: dict | None
    sweep_png: Path | None
    grids: list[tuple[str, Path]]
    groups: list[dict]  # by_configuration
    wandb: dict
    base_text: str


def _header_lines(name: str, spec: dict, ranked: list) -> list[str]:
    metric, mode = _metric_mode(spec)
    scale = f", scale {spec['scale']}" if spec.get("scale") else ""
    seeds = f", seeds {spec['seeds']}" if spec.get("seeds") else ""
    return [
        f"Search {name}: {len(ranked)} trials, {mode} {metric}{scale}{seeds}; base config "
        f"{Path(spec.get('base') or '').name}.",
        "Each row is one trial; its run folder is runs/<trial_id> (config.yaml, metrics.jsonl, eval.jsonl, "
        "checkpoints). Metric names carry their feature extractor: numbers of different extractors are "
        "never comparable, and [faice-tiny] (the offline stand-in) is not comparable to published FIDs; "
        "x_std[...] is the uncertainty of x (FID: bootstrap std; KID: std over subsets).",
        *(
            [found["text"][0].upper() + found["text"][1:] + "."]
            if (found := verdict(ranked, metric, mode))
            else []
        ),
    ]


def _sweep_lines(swept: dict | None) -> tuple[list[str], list[list[Any]]]:
    if not swept:
        return ["No sampler sweep (pass --sweep, or the best trial has no diffusion checkpoint)."], []
    from faice.sweep import fid_key, steps_to_match

    key = fid_key(swept["rows"])
    rows = [[r["sampler"], r["steps"], r["s_per_image"], r[key]] for r in swept["rows"]]
    ddpm = [r for r in swept["rows"] if r["sampler"] == "ddpm"]
    text = [f"Best checkpoint {swept['checkpoint']} (trial {swept['trial_id']}), {swept['samples']} samples per "
            f"point, the same seeds for every sampler, {key}."]  # fmt: skip
    if ddpm:
        ref = max(ddpm, key=lambda r: r["steps"])
        needed = steps_to_match(swept["rows"], ref[key])
        text.append(
            f"Fewest steps within 10% of DDPM-{ref['steps']}'s {key} ({ref[key]:.4g}): "
            + "; ".join(f"{s}: {n if n else 'not reached'}" for s, n in needed.items())
        )
    return text, rows


def _page(rep: ReportParts) -> str:
    esc = html.escape
    parts = [f"<h1>Search <code>{esc(rep.name)}</code></h1>"]
    parts += [f'<p class="note">{esc(line)}</p>' for line in _header_lines(rep.name, rep.spec, rep.ranked)]
    parts.append("<h2>Results</h2><p class='note'>Best first; click a column header to sort. The same cells "
                 "as results.csv.</p>" + _html_table(rep.table))  # fmt: skip
    if any(g["n"] > 1 for g in rep.groups):
        columns = [c for c in rep.groups[0] if c.startswith("best_") or "[" in c]
        seed_rows = [{"configuration": g["config"], "seeds": ", ".join(map(str, g["seeds"])),
                      **{c: format_mean_std(g.get(c)) for c in columns}} for g in rep.groups]  # fmt: skip
        parts.append("<h2>Across seeds</h2><p class='note'>mean ± sample standard deviation over the seeds of "
                     "each configuration</p>" + _html_table(seed_rows, id_="seeds"))  # fmt: skip
    parts.append("<h2>Curves</h2>" + _figures_html(rep.curves))
    text, rows = _sweep_lines(rep.swept)
    parts.append("<h2>FID against sampling steps</h2>" + "".join(f"<p>{esc(t)}</p>" for t in text))
    if rows:
        head = ["sampler", "steps", "s/image", fid_name(rep.swept)]
        parts.append(_html_table([dict(zip(head, r, strict=True)) for r in rows], id_="sweep"))
        parts.append(_figures_html([("FID against sampling steps per sampler", rep.sweep_png)]))
    parts.append("<h2>Quality against compute</h2>")
    parts.append(
        _figures_html([("Pareto plot", rep.pareto)]) if rep.pareto else "<p>No trial has the metric yet.</p>"
    )
    parts.append(f"<h2>Sample grids of the best {len(rep.grids)} trials</h2>" + _figures_html(rep.grids))
    parts.append("<h2>Config of each trial</h2><p class='note'>Keys that differ from the base config.</p>")
    for row in rep.ranked:
        diff = "".join(f"<tr><td class='text'>{esc(k)}</td><td class='text'>{esc(_fmt(v))}</td></tr>"
                       for k, v in row.diff.items()) or "<tr><td class='text'>(base config)</td></tr>"  # fmt: skip
        parts.append(f"<details><summary>{esc(row.trial_id)} ({esc(row.status)}): runs/{esc(row.trial_id)}"
                     f"/config.yaml</summary><table>{diff}</table></details>")  # fmt: skip
    parts.append(f"<details><summary>base config</summary><pre>{esc(rep.base_text)}</pre></details>")
    parts.append(
        "<h2>Weights &amp; Biases</h2>" + "".join(f"<p>{esc(t)}</p>" for t in _wandb_lines(rep.wandb))
    )
    body = "\n".join(parts)
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>faice report: {esc(rep.name)}"
            f"</title><style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script></body></html>\n")  # fmt: skip


def fid_name(swept: dict) -> str:
    """The fid[extractor] column of a sampler sweep."""
    from faice.sweep import fid_key

    return fid_key(swept["rows"])


def _markdown(rep: ReportParts) -> str:
    metric, mode = _metric_mode(rep.spec)
    lines = [
        f"# Search `{rep.name}`",
        "",
        *_header_lines(rep.name, rep.spec, rep.ranked),
        "",
        "## Results",
        "",
    ]
    lines += _md_table(list(rep.table[0]) if rep.table else [], [list(c.values()) for c in rep.table])
    lines += seed_table(rep.ranked, metric, mode)
    lines += ["", "## Curves", "", *(f"![{c}]({p.name})" for c, p in rep.curves)]
    text, rows = _sweep_lines(rep.swept)
    lines += ["", "## FID against sampling steps", "", *text, ""]
    if rows:
        lines += _md_table(["sampler", "steps", "s/image", fid_name(rep.swept)], rows)
        lines += ["", f"![FID against sampling steps]({rep.sweep_png.name})"]
    lines += [
        "",
        "## Quality against compute",
        "",
        f"![Pareto plot]({rep.pareto.name})" if rep.pareto else "no data",
    ]
    lines += ["", "## Sample grids of the best trials", "", *(f"![{c}]({p.name})" for c, p in rep.grids)]
    lines += ["", "## Config of each trial", ""]
    lines += [f"- `{r.trial_id}` (runs/{r.trial_id}/config.yaml): {short_diff(r.diff)}" for r in rep.ranked]
    lines += ["", "## Weights & Biases", "", *_wandb_lines(rep.wandb), ""]
    return "\n".join(lines)
