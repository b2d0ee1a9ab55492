"""`personalize solution-version report ARN`: one HTML page comparing a solution version's
offline metrics with Popularity-Count on the same split and with its parent version; and
`personalize solution-version wait ARN`, which prints a training's progress until it ends.

`render` is pure (a page with an inline SVG bar chart, no scripts, no downloads); `run`
fetches the versions through the control plane, as any client would.
"""
from __future__ import annotations

import html
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

from training.import_client import ApiError, Control, no_server

SHOWN = ("normalized_discounted_cumulative_gain_at_10", "normalized_discounted_cumulative_gain_at_25",
         "mean_reciprocal_rank_at_25", "precision_at_10", "precision_at_25", "coverage")
STYLE = "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
COLOURS = {"this version": "#1f77b4", "popularity (same split)": "#aaaaaa", "parent version": "#ff7f0e"}


def _bars(series: dict[str, dict[str, float]], width: int = 760, row: int = 14) -> str:
    """Grouped horizontal bars: one group per metric, one bar per series."""
    top = max([v for s in series.values() for v in s.values()] + [1e-9])
    label_w, group_h = 290, row * len(series) + 10
    height = group_h * len(SHOWN) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="11">']
    for g, metric in enumerate(SHOWN):
        y0 = g * group_h
        out.append(f'<text x="0" y="{y0 + group_h / 2 + 4}">{html.escape(metric)}</text>')
        for i, (name, values) in enumerate(series.items()):
            v = values.get(metric, 0.0)
            w = (width - label_w - 60) * v / top
            y = y0 + i * row
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 2}" '
                       f'fill="{COLOURS[name]}"><title>{html.escape(name)}: {v:.4f}</title></rect>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + row - 4}">{v:.4f}</text>')
    for i, name in enumerate(series):
        x = i * 220
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{COLOURS[name]}"/>'
                   f'<text x="{x + 14}" y="{height - 5}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _curve(losses: list[float], width: int = 760, height: int = 180) -> str:
    """The training loss per epoch as a line with a dot per epoch (hover: the value)."""
    if not losses:
        return "<p>No training curve: this recipe does not train by epochs.</p>"
    lo, hi = min(losses), max(losses)
    span, left, bottom = (hi - lo) or 1.0, 60, height - 25

    def x(i: int) -> float:
        return left + (width - left - 20) * (i / max(len(losses) - 1, 1))

    def y(v: float) -> float:
        return 10 + (bottom - 10) * (hi - v) / span

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(losses))
    dots = "".join(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{COLOURS["this version"]}">'
                   f"<title>epoch {i + 1}: loss {v:.4f}</title></circle>" for i, v in enumerate(losses))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            'font-family="sans-serif" font-size="11">'
            f'<text x="0" y="14">{hi:.3f}</text><text x="0" y="{bottom}">{lo:.3f}</text>'
            f'<text x="{left}" y="{height - 5}">epoch 1</text>'
            f'<text x="{width - 70}" y="{height - 5}">epoch {len(losses)}</text>'
            f'<polyline points="{points}" fill="none" stroke="{COLOURS["this version"]}"/>{dots}</svg>')


def _lift(value: float | None, baseline: float | None) -> str:
    """How much better than popularity, in %: the number a person asks first."""
    if value is None or not baseline:
        return ""
    return f"{100 * (value - baseline) / baseline:+.1f}%"


def _table(rows: dict[str, Any]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows.items() if v is not None) + "</table>"


def _trials(trials: list[dict[str, Any]]) -> str:
    """The hyperparameter search's trials: what each tried, its objective on the validation split."""
    if not trials:
        return ""
    names = list(trials[0]["hyperparameters"])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["trial", *names, trials[0]["objective"]])
    rows = "".join(
        f"<tr><td>{n}{' (best)' if t.get('best') else ''}</td>"
        + "".join(f"<td>{html.escape(str(t['hyperparameters'][k]))}</td>" for k in names)
        + f"<td>{t['value']:.4f}</td></tr>" for n, t in enumerate(trials, 1))
    return (f"<h2>Hyperparameter search</h2><table><tr>{head}</tr>{rows}</table><p>Each trial trained on "
            "the training rows less a validation split of them and was measured on that split; the best "
            "one's hyperparameters trained this version.</p>")


def render(version: dict[str, Any], parent: dict[str, Any] | None) -> str:
    series = {"this version": version.get("metrics", {}),
              "popularity (same split)": version.get("baselineMetrics", {}).get("popularity", {})}
    if parent is not None:
        series["parent version"] = parent.get("metrics", {})
    ci = version.get("metricIntervals", {})
    names = sorted({k for s in series.values() for k in s})

    def cells(n: str) -> str:
        out = []
        for i, s in enumerate(series.values()):
            margin = f" &plusmn; {ci[n]:.4f}" if i == 0 and n in ci else ""
            out.append(f"<td>{s[n]:.4f}{margin}</td>" if n in s else "<td></td>")
        lift = _lift(series["this version"].get(n), series["popularity (same split)"].get(n))
        return "".join(out) + f"<td>{lift}</td>"

    rows = "".join(f"<tr><td>{html.escape(n)}</td>{cells(n)}</tr>" for n in names)
    test = version.get("testSet", {})
    facts = {"solution version": version.get("solutionVersionArn"), "recipe": version.get("recipeArn"),
             "training mode": version.get("trainingMode"), "status": version.get("status"),
             "training time": f"{version.get('trainingHours', 0) * 3600:.1f} s",
             "interactions": version.get("interactions"), "parent": version.get("parentSolutionVersionArn"),
             "test set": f"{test['interactions']:,} held-out interactions of {test['users']:,} users"
             if test else None,
             "left out": ", ".join(f"{n} {why}" for why, n in version.get("skippedInteractions", {}).items())
             or None}
    used = version.get("hyperparametersUsed", {})
    title = html.escape(str(facts["solution version"]))
    head = "".join(f"<th>{html.escape(s)}</th>" for s in series) + "<th>lift over popularity</th>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}"
            f"</style></head><body><h1>Solution version report</h1>{_table(facts)}"
            f"<h2>Offline metrics</h2>{_bars(series)}<table><tr><th>metric</th>{head}</tr>{rows}</table>"
            "<p>Metrics: Personalize's protocol (a random 10% of users; the newest 10% of each "
            "one's interactions held out; the full catalogue ranked minus what the user has seen). "
            "&plusmn;: half the width of the 95% confidence interval over the test users.</p>"
            f"<h2>Training curve</h2>{_curve(version.get('trainingCurve', []))}"
            + (f"<h2>Hyperparameters used</h2>{_table(dict(sorted(used.items())))}" if used else "")
            + _trials(version.get("hpoTrials", [])) + "</body></html>")


def not_reportable(version: dict[str, Any]) -> str | None:
    """Why a version has no report (its metrics do not exist yet, or never will); None: it has."""
    if version["status"] == "ACTIVE":
        return None
    return (f"{version['solutionVersionArn']} is {version['status']}: a report needs an ACTIVE version "
            "(`personalize solution-version wait ARN` follows a training)")


class Unanswered(Exception):
    """The control plane gave no version: the one line to print (an error, or no server)."""


def described(control: Control, arn: str) -> dict[str, Any]:
    try:
        return control("DescribeSolutionVersion", solutionVersionArn=arn)["solutionVersion"]
    except ApiError as exc:
        raise Unanswered(f"error: {exc}\n") from None
    except urllib.error.URLError as exc:
        raise Unanswered(no_server(control.endpoint.rstrip("/"), exc)) from None


def run(endpoint: str, version_arn: str, out: Path) -> int:
    control = Control(endpoint)
    try:
        version = described(control, version_arn)
        parent_arn = version.get("parentSolutionVersionArn")
        parent = described(control, parent_arn) if parent_arn else None
    except Unanswered as exc:
        print(exc, end="", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    if (why := not_reportable(version)) is not None:
        print(f"error: {why}", file=sys.stderr)  # noqa: T201
        return 1
    out.write_text(render(version, parent))
    print(f"wrote {out}")  # noqa: T201
    return 0


def watch(endpoint: str, version_arn: str, poll_s: float = 0.5) -> int:
    """Print a training's progress lines (epochs, loss, ETA) until it ends; 0 when ACTIVE."""
    control, last = Control(endpoint), None
    while True:
        try:
            version = described(control, version_arn)
        except Unanswered as exc:
            print(exc, end="", file=sys.stderr)  # noqa: T201 - CLI output
            return 1
        line = f"{version['status']}: {version.get('progress', {}).get('message', '')}".rstrip(": ")
        if line != last:
            print(line, flush=True)  # noqa: T201
            last = line
        if version["status"] in ("ACTIVE", "CREATE FAILED", "CREATE STOPPED"):
            if version["status"] != "ACTIVE":
                print(version.get("failureReason", ""))  # noqa: T201
            return 0 if version["status"] == "ACTIVE" else 1
        time.sleep(poll_s)
