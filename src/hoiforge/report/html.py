"""The dataset report: ``OUT/report/index.html`` (self-contained) and ``OUT/report/figures.json``.

Plots are matplotlib (Agg) PNGs embedded as data URIs, so the page opens from a mail
attachment or an air-gapped machine: no CDN, no script. Every plot has its numbers beside it
in a table, which is what the report test checks against the manifest.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import time
from pathlib import Path
from typing import Any

from hoiforge.datasets.layout import OutLayout, write_atomic
from hoiforge.report import audit_section
from hoiforge.report.audit import audit_figures
from hoiforge.report.figures import compute_figures

KEPT_COLOR, ALL_COLOR, DROP_COLOR = "#2a9d8f", "#b0b7c3", "#e76f51"


def report_dir(out: str | Path) -> Path:
    return OutLayout(out).root / "report"


def build_report(out: str | Path) -> dict[str, Any]:
    """Compute the figures and write figures.json + index.html under OUT/report; returns timings and paths."""
    t0 = time.perf_counter()
    figures = compute_figures(out)
    figures["audit"] = audit_figures(out)
    t1 = time.perf_counter()
    page = render_page(figures)
    t2 = time.perf_counter()
    folder = report_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "figures.json", json.dumps(figures, indent=1, allow_nan=False).encode())
    write_atomic(folder / "index.html", page.encode())
    return {
        "html": folder / "index.html",
        "json": folder / "figures.json",
        "figures": figures,
        "seconds": {"figures": t1 - t0, "render": t2 - t1},
    }


# ---------------------------------------------------------------------------------- plotting


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _bars(ax, hist: dict[str, Any], color: str, label: str | None = None, alpha: float = 1.0) -> None:
    edges, counts = hist.get("edges", []), hist.get("counts", [])
    if counts:
        ax.bar(
            edges[:-1],
            counts,
            width=[b - a for a, b in itertools.pairwise(edges)],
            align="edge",
            color=color,
            alpha=alpha,
            label=label,
            edgecolor="white",
            linewidth=0.3,
        )


def _hist_plot(series: list[tuple[str, dict[str, Any], str]], xlabel: str, title: str, ylabel: str = "images") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    for label, hist, color in series:
        _bars(ax, hist, color, label, alpha=0.85)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def _count_plot(counts: dict[str, int], xlabel: str, title: str, color: str = KEPT_COLOR, horizontal: bool = False) -> str:
    plt = _plt()
    names, values = list(counts)[:30], list(counts.values())[:30]
    fig, ax = plt.subplots(figsize=(5.2, max(2.4, 0.25 * len(names) + 0.8) if horizontal else 2.8))
    if horizontal:
        ax.barh(names[::-1], values[::-1], color=color)
        ax.set_xlabel("images")
    else:
        ax.bar(names, values, color=color)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _funnel_plot(funnel: dict[str, Any]) -> str:
    plt = _plt()
    labels = ["inputs"] + [s["stage"] for s in funnel["steps"]]
    remaining = [funnel["inputs"]] + [s["remaining"] for s in funnel["steps"]]
    removed = [0] + [s["dropped"] + s["failed"] for s in funnel["steps"]]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(labels) + 1))
    y = range(len(labels))[::-1]
    ax.barh(list(y), remaining, color=KEPT_COLOR, label="remaining after stage")
    ax.barh(list(y), removed, left=remaining, color=DROP_COLOR, label="dropped/failed here")
    ax.set_yticks(list(y), labels)
    ax.set_xlabel("images")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / len(labels)), ncol=2, frameon=False)
    ax.set_title("Funnel", fontsize=10)
    return _png(fig)


# ---------------------------------------------------------------------------------- page


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    keys = ("count", "min", "p05", "median", "mean", "p95", "max")
    return _table([(name, *(s.get(k, "") for k in keys)) for name, s in summaries.items()], ("", *keys), "summary")


def _section(fig_id: str, title: str, body: str) -> str:
    return f'<section id="{fig_id}"><h2>{_e(title)}</h2>{body}</section>'


def _absent(what: str) -> str:
    return f'<p class="absent">Not recorded by this build ({_e(what)}): the recipe has no stage that measures it.</p>'


def render_page(f: dict[str, Any]) -> str:
    sections = [
        _funnel_section(f),
        _reasons_section(f.get("reasons", {})),
        _resolution_section(f["resolution"]),
        _persons_section(f["persons"]),
        _products_section(f["products"]),
        _quality_section(f["quality"]),
        _histogram_section("caption_words", "Caption length", f["caption_words"], "words per caption"),
        _keypoints_section(f["keypoints"]),
        _text_section(f["text"]),
        _shards_section(f["shards"]),
        _splits_section(f["splits"]),
        _stage_metrics_section(f.get("stage_metrics", [])),
        _time_section(f["stage_time"]),
        _profile_section(f.get("profile") or {}),
        audit_section.render(f.get("audit") or {}, f["out"]),
    ]
    t = f["totals"]
    head = (
        f'<h1>hoiforge dataset report</h1><p class="out">{_e(f["out"])}</p>'
        f'<p class="totals" id="totals"><span>inputs <b data-k="inputs">{t["inputs"]}</b></span>'
        f'<span>kept <b data-k="kept">{t["kept"]}</b></span><span>dropped <b data-k="dropped">{t["dropped"]}</b></span>'
        f'<span>failed <b data-k="failed">{t["failed"]}</b></span></p>'
        '<p>The same numbers as JSON: <a href="figures.json">figures.json</a>.</p>'
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>hoiforge report</title><style>{CSS}</style></head><body>{head}{''.join(sections)}</body></html>"


def _funnel_section(f: dict[str, Any]) -> str:
    fun = f["funnel"]
    rows = [("inputs", "", "", "", fun["inputs"])]
    for s in fun["steps"]:
        reasons = "; ".join(f"{n} × {r}" for r, n in s["reasons"].items())
        rows.append((s["stage"], s["dropped"], s["failed"], reasons, s["remaining"]))
    rows.append(("kept", "", "", "", fun["kept"]))
    return _section(
        "funnel",
        "Funnel: inputs → drops per stage → kept",
        _funnel_plot(fun) + _table(rows, ("stage", "dropped", "failed", "reasons", "remaining"), "funnel"),
    )


def _param_text(dist: dict[str, Any]) -> str:
    if "median" in dist:
        return f"{_fmt(dist['min'])}..{_fmt(dist['max'])} (median {_fmt(dist['median'])})"
    return ", ".join(f"{v} ×{n}" for v, n in list(dist["top"].items())[:5]) + (
        f" (+{dist['distinct'] - 5})" if dist["distinct"] > 5 else ""
    )


def _reasons_section(reasons: dict[str, Any], plots: int = 6) -> str:
    """One row per reason code, with the distribution of its parameters (a histogram for numbers)."""
    if not reasons:
        return _section("reasons", "Drop and failure reasons", _absent("no dropped or failed inputs"))
    rows = [
        (code, r["status"], r["count"], "; ".join(f"{k}: {_param_text(d)}" for k, d in r.get("params", {}).items()), r.get("example") or "")
        for code, r in reasons.items()
    ]
    figures = []
    for code, r in list(reasons.items())[:plots]:
        for name, dist in r.get("params", {}).items():
            if "histogram" in dist and len(dist["histogram"]["counts"]) > 1:
                figures.append(_hist_plot([(name, dist["histogram"], DROP_COLOR)], name, f"{code}: {name}", ylabel="inputs"))
                break
    body = _table(rows, ("code", "status", "inputs", "parameters", "example"), "reasons") + "".join(figures)
    return _section("reasons", "Drop and failure reasons (by code)", body)


def _resolution_section(r: dict[str, Any]) -> str:
    if not r["available"]:
        return _section("resolution", "Resolution", _absent(r["column"]))
    plots = "".join(
        _hist_plot(
            [("all decoded", r["all"][f"{side}_hist"], ALL_COLOR), ("kept", r["kept"][f"{side}_hist"], KEPT_COLOR)],
            f"{side} side (px)",
            f"{side.capitalize()} side",
        )
        for side in ("short", "long")
    )
    table = _summary_table({f"{side} side, {who}": r[who][side] for who in ("kept", "all") for side in ("short", "long")})
    return _section("resolution", "Resolution (short side / long side)", f'<div class="row">{plots}</div>{table}')


def _persons_section(p: dict[str, Any]) -> str:
    if not p["available"]:
        return _section("persons", "Persons per image", _absent(p["column"]))
    rows = [(k, p["kept"].get(k, 0), p["all"].get(k, 0)) for k in sorted(set(p["kept"]) | set(p["all"]), key=int)]
    return _section(
        "persons",
        "Persons per image",
        _count_plot(p["kept"], "persons", "Persons per kept image") + _table(rows, ("persons", "kept", "all decoded"), "persons"),
    )


def _products_section(p: dict[str, Any]) -> str:
    if not p["available"]:
        return _section("products", "Products", _absent(p["column"]))
    body = ""
    if "labels" in p:
        body += _count_plot(p["labels"], "category", "Product categories (first product)", horizontal=True)
        body += _table(list(p["labels"].items()), ("category", "kept images"), "labels")
    if "per_image" in p:
        body += _table(list(p["per_image"].items()), ("products", "kept images"), "products-per-image")
    if "area" in p:
        body += _hist_plot([("kept", p["area"]["histogram"], KEPT_COLOR)], "largest product mask / image area", "Mask area")
        body += _summary_table({"mask area": p["area"]["summary"]})
    return _section("products", "Products: categories and mask areas", body)


def _quality_section(q: dict[str, Any]) -> str:
    if not q["available"]:
        return _section("quality", "Quality score", _absent("m.aesthetic / m.brisque"))
    body = ""
    for name in ("aesthetic", "brisque"):
        if name in q:
            s = q[name]
            better = "higher is better" if name == "aesthetic" else "lower is better"
            body += _hist_plot(
                [("all scored", s["all"]["histogram"], ALL_COLOR), ("kept", s["kept"]["histogram"], KEPT_COLOR)],
                f"{name} ({better})",
                f"{name.capitalize()} score",
            )
            body += _summary_table({f"{name}, kept": s["kept"]["summary"], f"{name}, all scored": s["all"]["summary"]})
    return _section("quality", "Aesthetic / quality score", body)


def _histogram_section(fig_id: str, title: str, h: dict[str, Any], xlabel: str) -> str:
    if not h["available"]:
        return _section(fig_id, title, _absent(h["column"]))
    return _section(
        fig_id, title, _hist_plot([("kept", h["histogram"], KEPT_COLOR)], xlabel, title) + _summary_table({h["column"]: h["summary"]})
    )


def _keypoints_section(k: dict[str, Any]) -> str:
    if not k["available"]:
        return _section("keypoints", "Keypoint visibility", _absent("m.kp_body/feet/hands/face"))
    parts = k["parts"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    ax.bar(list(parts), [p["mean_fraction"] or 0 for p in parts.values()], color=KEPT_COLOR)
    ax.set_ylim(0, 1)
    ax.set_ylabel("visible fraction per person")
    ax.set_title("Keypoint visibility by body part", fontsize=10)
    rows = [(name, p["keypoints"], p["mean_visible"], p["mean_fraction"]) for name, p in parts.items()]
    return _section(
        "keypoints",
        "Keypoint visibility by body part",
        _png(fig) + _table(rows, ("part", "keypoints", "mean visible per person", "mean fraction"), "keypoints"),
    )


def _text_section(t: dict[str, Any]) -> str:
    if not t["available"]:
        return _section("text", "Text regions", _absent("m.text_regions / m.text_removed"))
    return _section(
        "text", "Text regions (OCR) and removals", _summary_table({k: v["summary"] for k, v in t.items() if isinstance(v, dict)})
    )


def _shards_section(s: dict[str, Any]) -> str:
    if not s["available"]:
        return _section("shards", "Shards", "<p>No shards (nothing kept).</p>")
    body = f"<p>{s['count']} shards, {s['total_samples']} samples, {s['total_bytes'] / 1e6:.1f} MB.</p>"
    body += f'<div class="row">{_hist_plot([("shards", s["megabytes"]["histogram"], ALL_COLOR)], "MB", "Shard size", "shards")}{_hist_plot([("shards", s["samples"]["histogram"], ALL_COLOR)], "samples", "Samples per shard", "shards")}</div>'
    body += _summary_table({"size (MB)": s["megabytes"]["summary"], "samples": s["samples"]["summary"]})
    return _section("shards", "Shard sizes", body)


def _splits_section(s: dict[str, int]) -> str:
    return _section("splits", "Train/test split (kept)", _table(list(s.items()), ("split", "kept images"), "splits"))


def _time_section(t: dict[str, Any]) -> str:
    if not t:
        return _section("stage_time", "Time per image", _absent("m.time.<stage>"))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 0.3 * len(t) + 1))
    ax.barh(list(t)[::-1], [v["mean"] for v in t.values()][::-1], color=ALL_COLOR)
    ax.set_xlabel("seconds per image (mean)")
    ax.set_title("Per-stage time", fontsize=10)
    return _section("stage_time", "Per-stage time per image", _png(fig) + _summary_table({k: v for k, v in t.items()}))


def _profile_section(p: dict[str, Any]) -> str:
    """--profile: how the plan ran (operators, actor idle, waits, set-up); absent without it."""
    if not p:
        return _section("profile", "Where the time went", '<p class="absent">Not recorded: build with --profile to see it.</p>')
    segs = _table(
        [
            ("+".join(s["stages"]), s["execution"], s.get("actors") or "", s["num_cpus"], s["num_gpus"], s["batch_size"])
            for s in p.get("segments", [])
        ],
        ("stages (one operator)", "runs as", "actors", "CPUs each", "GPUs each", "batch"),
        "segments",
    )
    ops = _table(
        [
            (
                o["operator"],
                o["tasks"],
                o.get("start_delay_s", ""),
                o.get("span_s", ""),
                o.get("busy_s", ""),
                o.get("cpu_s", ""),
                o.get("actors", ""),
                o.get("actor_idle_s", ""),
                o.get("scheduling_s", ""),
                o.get("output_backpressure_s", ""),
            )
            for o in p.get("operators", [])
        ],
        (
            "operator",
            "tasks",
            "first start (s)",
            "span (s)",
            "busy (s)",
            "CPU (s)",
            "actors",
            "actor idle (s)",
            "scheduling wait (s)",
            "output back-pressure (s)",
        ),
        "operators",
    )
    per_stage = _table(
        [(k, v["count"], v["mean"], v["p50"], v["p95"], v["max"], v["total"]) for k, v in p.get("stage_seconds_per_image", {}).items()],
        ("stage", "images", "mean (s)", "p50", "p95", "max", "total (s)"),
        "stage-profile",
    )
    waits = _table(
        [(k, v["count"], v["mean"], v["p50"], v["p95"], v["max"]) for k, v in p.get("queue_wait_s", {}).items()],
        ("operator starting at", "images", "mean wait (s)", "p50", "p95", "max"),
        "waits",
    )
    setup = _table(
        [(k, v["workers"], v["mean"], v["max"], v["total"]) for k, v in p.get("setup_s", {}).items()],
        ("stage", "workers", "mean (s)", "max (s)", "total (s)"),
        "setup",
    )
    body = (
        f"<p>Plan ran {_fmt(p.get('plan_seconds'))} s. Actor idle = actors &times; span &minus; busy: seconds a pool held its CPUs or "
        "GPUs without a batch. Queue wait: per image, from the end of one operator to the start of the next.</p>"
        f"<h3>Segments</h3>{segs}<h3>Ray Data operators</h3>{ops}<h3>Per image, per stage</h3>{per_stage}"
        f"<h3>Queue waits</h3>{waits}<h3>Set-up per worker (models loaded)</h3>{setup}"
    )
    return _section("profile", "Where the time went (--profile)", body)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{margin-bottom:0}.out{color:#666;margin-top:2px}
.totals span{margin-right:18px}.totals b{font-size:18px}
section{border-top:1px solid #ddd;padding:8px 0 16px}
h2{font-size:17px}
table{border-collapse:collapse;margin:8px 0;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:8px}
.absent{color:#888;font-style:italic}
img{max-width:100%}
"""


def _stage_metrics_section(stages: list[dict[str, Any]]) -> str:
    """Every metric the build's stages declare, one figure each (report/figures.py declared_metrics)."""
    if not stages:
        return _section("stage-metrics", "Stage metrics", _absent("no stage of this recipe declares a metric"))
    body = ""
    for entry in stages:
        body += f"<h3>{_e(entry['stage'])}</h3>"
        for m in entry["metrics"]:
            title = f"{m['title']} ({m['column']}, {'kept' if m['over'] == 'kept' else 'all'} samples)"
            if not m["available"]:
                figure = _absent(m["column"])
            elif m["plot"] == "histogram":
                figure = _hist_plot(
                    [(m["over"], m["histogram"], KEPT_COLOR if m["over"] == "kept" else ALL_COLOR)], m["unit"] or m["name"], m["title"]
                )
                figure += _summary_table({m["column"]: m["summary"]})
            else:
                figure = _count_plot(m["counts"], m["unit"] or m["name"], m["title"], horizontal=m["plot"] == "categories")
            body += f'<figure id="metric-{_e(entry["stage"])}-{_e(m["name"])}"><figcaption>{_e(title)}</figcaption>{figure}</figure>'
    return _section("stage-metrics", "Stage metrics: every metric the recipe's stages declare", body)
