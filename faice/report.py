"""`faice report` and `faice compare`: a search's results as a page a researcher can paste from.

Everything comes from the search folder on disk (search.yaml, base_config.yaml, runs/<trial>/
metrics.jsonl, eval.jsonl, config.yaml, samples/, checkpoints/), never from Ray or W&B:

    <out>/index.html   self-contained (images inlined), table sortable by clicking a header
    <out>/report.md    the markdown twin, linking the PNGs next to it
    <out>/*.png        metric-vs-step curves, FID vs sampling steps, quality vs compute, sample grids
    <out>/sampling-steps.json   the sweep of the best checkpoint (reused when the checkpoint is unchanged)
    <out>/wandb.json   W&B link (online runs) and panel config of the search's group

Every number names its trial (and run folder) and every metric its extractor (`fid[inception]`); the
table is results.csv's, cell for cell.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faice.figures import md_table, new_figure, save_figure
from faice.results import (
    _fmt,
    _metric_mode,
    _read_yaml,
    by_configuration,
    collect,
    format_mean_std,
    load_search,
    rank,
    seed_table,
    short_diff,
    table_cells,
    verdict,
)
from faice.results import (
    report as write_results,
)
from faice.train.checkpoint import latest_checkpoint
from faice.train.reporting import WANDB_RUN

SWEEP_FILE = "sampling-steps.json"
TOP_GRIDS = 3  # sample grids of the best trials shown


# ---------------------------------------------------------------------------- figures


def _figure():
    return new_figure((7, 4), 110)


def _save(plt, fig, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    return save_figure(plt, fig, path)


def plot_pareto(rows: list, metric: str, mode: str, path: Path) -> Path | None:
    """`metric` (best per trial) against compute: GPU-hours when trials had GPUs, else training steps.
    The Pareto front (no other trial is both cheaper and better) is drawn as a line."""
    use_gpu = any((r.gpu_hours or 0) > 0 for r in rows)
    cost_name = "GPU-hours" if use_gpu else "training steps"
    points = [((r.gpu_hours if use_gpu else r.last_step), r.best, r.trial_id) for r in rows]
    points = [p for p in points if p[0] is not None and p[1] is not None]
    if not points:
        return None
    better = (lambda a, b: a <= b) if mode == "min" else (lambda a, b: a >= b)
    front = sorted(
        p for p in points if not any(q[0] <= p[0] and better(q[1], p[1]) and q[:2] != p[:2] for q in points)
    )
    plt, fig, ax = _figure()
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:gray", label="trials")
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="tab:red", label="Pareto front")
    for x, y, trial in points:
        ax.annotate(trial, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=cost_name, ylabel=f"best {metric}", title=f"{metric} against compute ({mode} is better)")
    ax.legend(fontsize=8)
    return _save(plt, fig, ax, path)


def plot_sweep(rows: list[dict], path: Path, title: str) -> Path | None:
    """FID against sampling steps, one line per sampler (log-scaled steps)."""
    if not rows:
        return None
    from faice.sweep import fid_key

    key = fid_key(rows)
    plt, fig, ax = _figure()
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = sorted((r["steps"], r[key]) for r in rows if r["sampler"] == sampler)
        ax.plot([s for s, _ in mine], [v for _, v in mine], "o-", label=sampler)
    ax.set_xscale("log")
    ax.set(xlabel="sampling steps", ylabel=key, title=title)
    ax.legend(fontsize=8)
    return _save(plt, fig, ax, path)


# ---------------------------------------------------------------------------- the sweep


def best_checkpoint(search_dir: Path, rows: list, mode: str) -> tuple[Any, Path] | None:
    """(best trial row, its newest checkpoint folder) among trials that have one."""
    for row in rank(rows, mode):
        ckpt = latest_checkpoint(search_dir / "runs" / row.trial_id)
        if row.best is not None and ckpt is not None:
            return row, ckpt
    return None


def sweep_best(
    search_dir: Path, rows: list, mode: str, out: Path, plan: dict | None, samples: int | None, log: Callable
) -> dict | None:
    """The sampling-steps sweep of the best checkpoint, computed once per (checkpoint, plan, samples) and
    kept in <out>/sampling-steps.json; None when `plan` is None or nothing can be swept."""
    if not plan:
        return None
    found = best_checkpoint(search_dir, rows, mode)
    if found is None:
        log("faice report: no checkpoint to sweep samplers on")
        return None
    row, ckpt = found
    config = _read_yaml(ckpt / "config.yaml") or {}
    if config.get("task", "diffusion") != "diffusion":
        log(f"faice report: sampler sweep skipped: task {config.get('task')} (diffusion samplers only)")
        return None
    samples = samples or (config.get("eval") or {}).get("num_samples") or 64
    key = {"checkpoint": str(ckpt.resolve()), "plan": plan, "samples": samples}
    cache = out / SWEEP_FILE
    if cache.is_file():
        old = json.loads(cache.read_text())
        if {k: old.get(k) for k in key} == key:
            return old
    from faice.sweep import sampler_sweep

    log(f"faice report: sweeping samplers on {row.trial_id}'s checkpoint {ckpt.name} ({samples} samples/row)")
    result = {**key, "trial_id": row.trial_id, "rows": sampler_sweep(ckpt, plan, samples, log=log)}
    cache.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------- W&B


def wandb_info(search_dir: Path, spec: dict) -> dict:
    """Where the search lives in W&B: the group link when any trial ran online, and a panel config (the
    metrics to chart against `step`, one line per trial, filtered to the group) to build a workspace or
    report from. Offline the local report is the record."""
    metric, _ = _metric_mode(spec)
    runs = [json.loads(p.read_text()) for p in sorted(search_dir.glob(f"runs/*/{WANDB_RUN}"))]
    online = [r for r in runs if r.get("mode") == "online" and r.get("url")]
    group = spec.get("name") or search_dir.name
    info: dict[str, Any] = {"group": group, "runs": len(runs), "online": len(online), "link": None}
    if online:
        entity, project = online[0]["url"].split("/")[3:5]
        info["link"] = f"https://wandb.ai/{entity}/{project}/groups/{group}/workspace"
        info["runs_urls"] = {r["id"]: r["url"] for r in online}
    info["panels"] = {
        "filters": {"group": group},
        "x_axis": "step",
        "panels": [
            {"type": "line", "y": m, "group_by": "run", "title": m} for m in dict.fromkeys([metric, "loss"])
        ]  # fmt: skip
        + [{"type": "media", "key": "samples"}, {"type": "table", "columns": ["name", f"best {metric}"]}],
    }
    return info


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


def build_report(
    search_dir: str | Path,
    out: str | Path | None = None,
    sweep: dict[str, list[int]] | None = None,
    sweep_samples: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Write the report of `search_dir` to `out` (default <search>/report); returns its paths and parts."""
    search_dir = Path(search_dir)
    spec = load_search(search_dir)
    metric, mode = _metric_mode(spec)
    out = Path(out) if out else search_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = write_results(search_dir)  # results.csv/md/png refreshed: the page shows the same cells
    rows = results["rows"]
    ranked, table = table_cells(rows, spec)
    table = table[: len(ranked)]
    name = spec.get("name") or search_dir.name

    curves = [
        (f"{metric} against training step, per trial (dashed = stopped early)", out / "curves-metric.png")
    ]
    from faice.results import plot_metric

    plot_metric(search_dir, metric, curves[0][1])
    if metric != "loss":
        plot_metric(search_dir, "loss", out / "curves-loss.png")
        curves.append(("training loss against step, per trial", out / "curves-loss.png"))
    pareto = plot_pareto(rows, metric, mode, out / "pareto.png")
    swept = sweep_best(search_dir, rows, mode, out, sweep, sweep_samples, log)
    sweep_png = None
    if swept:
        title = f"best checkpoint ({swept['trial_id']}), {swept['samples']} samples per point"
        sweep_png = plot_sweep(swept["rows"], out / "sampling-steps.png", title)
    grids = []
    for row in [r for r in ranked if r.grid][:TOP_GRIDS]:
        target = out / f"grid-{row.trial_id}.png"
        shutil.copyfile(row.grid, target)
        grids.append((f"{row.trial_id}: best {metric} {_fmt(row.best)}; {short_diff(row.diff)}", target))
    groups = by_configuration(rows, metric, mode)
    wandb = wandb_info(search_dir, spec)
    (out / "wandb.json").write_text(json.dumps(wandb, indent=2) + "\n")
    base_text = (
        (search_dir / "base_config.yaml").read_text() if (search_dir / "base_config.yaml").is_file() else ""
    )

    parts = ReportParts(
        name, spec, ranked, table, curves, pareto, swept, sweep_png, grids, groups, wandb, base_text
    )
    html_path = out / "index.html"
    html_path.write_text(_page(parts))
    md_path = out / "report.md"
    md_path.write_text(_markdown(parts))
    return {"html": html_path, "md": md_path, "rows": ranked, "sweep": swept, "wandb": wandb, "dir": out}


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
    from faice.sweep import fid_key

    return fid_key(swept["rows"])


def _wandb_lines(wandb: dict) -> list[str]:
    if wandb["link"]:
        return [f"Group {wandb['group']} in W&B: {wandb['link']} ({wandb['online']} online runs); panel "
                "config in wandb.json."]  # fmt: skip
    return [f"W&B was offline or off for this search ({wandb['runs']} local W&B runs): this report is the "
            "record. Upload with `wandb sync runs/*/wandb/offline-run-*`; wandb.json holds the panel config."]  # fmt: skip


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


# ---------------------------------------------------------------------------- compare


def compare(search_dirs: Sequence[str | Path]) -> tuple[list[str], list[list[Any]], list[str]]:
    """(header, one row per search, metric columns left out): each search's best trial with the metric
    columns every search has, their uncertainties (x_std[...]) and `verdict`: `tie` when that search's
    runner-up is within noise of its best (faice.results.verdict). A column is one metric of one extractor, so `fid[faice-tiny]` and
    `fid[inception]` never share one; columns some searches lack are returned as left out."""
    from faice.evaluate import std_key

    entries, seen = [], set()
    for folder in map(Path, search_dirs):
        spec = load_search(folder)
        metric, mode = _metric_mode(spec)
        rows = collect(folder)
        for row in rows:
            seen |= set(row.evals) | ({metric} if row.best is not None else set())
        found = verdict(rows, metric, mode)
        best = found["best"] if found else None
        values = {}
        if best is not None:
            values = {**best.evals, metric: best.best, "verdict": "tie" if found["tie"] else "clear"}
            if best.best_std is not None:
                values[std_key(metric)] = best.best_std
            if best.steps_per_s is not None:
                values["steps_per_s"] = best.steps_per_s
        entries.append((folder, spec, metric, best, values))
    shared = set.intersection(*(set(e[4]) for e in entries)) if entries else set()
    ordered = sorted(shared, key=lambda k: (k == "verdict", "[" not in k, k[k.find("[") :], k))
    header = ["search", "trial", "config", *ordered, "run"]
    table = []
    for folder, spec, metric, best, values in entries:
        name = spec.get("name") or folder.name
        if best is None:
            table.append([name, "", f"no trial has {metric} yet", *([None] * len(ordered)), ""])
            continue
        run = folder / "runs" / best.trial_id
        table.append([name, best.trial_id, short_diff(best.diff), *(values[k] for k in ordered), str(run)])
    return header, table, sorted(seen - set(header))


def compare_command(search_dirs: Sequence[str], out: str | None = None, stream=None) -> int:
    """Print the comparison as markdown (and write it, plus a csv twin, to `out` when given)."""
    import sys

    stream = stream or sys.stdout
    header, table, dropped = compare(search_dirs)
    lines = _md_table(header, table)
    if dropped:
        lines += ["", "Not shared by every search, so not compared: " + ", ".join(dropped)]
    text = "\n".join(lines) + "\n"
    print(text, end="", file=stream)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        with path.with_suffix(".csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([["" if v is None else v for v in row] for row in table])
        print(f"written: {path} and {path.with_suffix('.csv')}", file=stream)
    return 0
