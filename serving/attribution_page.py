"""`personalize metric-attribution report ARN`: the report (serving.attribution_report) as one
HTML page and a few lines of text.

Per metric, a bar per source; per A/B split, each arm's users and metric per user, and the
lift of B over A drawn as its 95% interval around the estimate, beside the line of no lift.
`render` and `lines` are pure (inline SVG, no scripts, no downloads); serving/cli.py fetches
the report from the server's console reads, signed as any call is.
"""
from __future__ import annotations

import html
from typing import Any

STYLE = "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
BAR, ARM_A, ARM_B = "#1f77b4", "#aaaaaa", "#ff7f0e"


def _short(source: str) -> str:
    """A campaign's name for its ARN (arn:...:campaign/NAME), any other source as it is."""
    return source.rsplit(":campaign/", 1)[-1] if ":campaign/" in source else source


def _bars(values: list[tuple[str, float]], width: int = 760, row: int = 18) -> str:
    top = max([v for _, v in values] + [1e-9])
    label_w = 260
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(values) + 4}" '
           'font-family="sans-serif" font-size="11">']
    for i, (label, v) in enumerate(values):
        w = max(0.0, (width - label_w - 80) * v / top)
        out.append(f'<text x="0" y="{i * row + 13}">{html.escape(label[:40])}</text>'
                   f'<rect x="{label_w}" y="{i * row + 2}" width="{w:.1f}" height="{row - 4}" fill="{BAR}">'
                   f'<title>{html.escape(label)}: {v:g}</title></rect>'
                   f'<text x="{label_w + w + 4:.1f}" y="{i * row + 13}">{v:,.2f}</text>')
    return "".join(out) + "</svg>"


def _interval(lift: float | None, low: float | None, high: float | None, width: int = 320) -> str:
    """The lift and its interval on an axis from -100% to the larger of +100% and the interval."""
    if lift is None or low is None or high is None:
        return "not enough data"
    span_lo, span_hi = -1.0, max(1.0, high * 1.1)

    def x(v: float) -> float:
        return 10 + (width - 20) * (v - span_lo) / (span_hi - span_lo)
    colour = ARM_B if low > 0 else (ARM_A if high < 0 else "#555555")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="24">'
            f'<line x1="{x(0):.1f}" y1="2" x2="{x(0):.1f}" y2="22" stroke="#999" stroke-dasharray="3"/>'
            f'<line x1="{x(low):.1f}" y1="12" x2="{x(high):.1f}" y2="12" stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{x(lift):.1f}" cy="12" r="4" fill="{colour}"/></svg>')


def _percent(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1%}"


def render(report: dict[str, Any]) -> str:
    title = html.escape(f"Metric attribution {report['name']}")
    body = [f"<h1>{title}</h1><p>{report['events']:,} events; each attributed to the campaign whose "
            "recommendationId it carries, to its eventAttributionSource, or to SOURCE_NAME_UNDEFINED.</p>"]
    for metric in report["metrics"]:
        name = metric["metricName"]
        rows = [(_short(t["source"]), t["value"]) for t in report["totals"] if t["metricName"] == name]
        body.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(metric['expression'])} over "
                    f"{html.escape(metric['eventType'])} events</p>"
                    + (_bars(rows) if rows else "<p>no events yet</p>"))
    for split in report["splits"]:
        head = (f"<h2>A/B split: {html.escape(_short(split['campaignArn']))} (A) vs "
                f"{html.escape(_short(split['armB']))} (B), {split['share']:.0%} of users in B</h2>")
        rows = "".join(
            f"<tr><td>{html.escape(m['metricName'])}</td><td>{m['a']['users']:,}</td><td>{m['a']['mean']:.4f}</td>"
            f"<td>{m['b']['users']:,}</td><td>{m['b']['mean']:.4f}</td><td>{_percent(m['lift'])}</td>"
            f"<td>[{_percent(m['low'])}, {_percent(m['high'])}]</td>"
            f"<td>{_interval(m['lift'], m['low'], m['high'])}</td></tr>" for m in split["metrics"])
        body.append(head + "<table><tr><th>metric</th><th>users A</th><th>per user A</th><th>users B</th>"
                    "<th>per user B</th><th>lift of B</th><th>95% interval</th><th></th></tr>"
                    f"{rows}</table><p>Every user active since the split first answered is in the arm "
                    "the split gives it, served or not (intention to treat); a metric counts the events "
                    "attributed to that arm. The dashed line is no lift.</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def lines(report: dict[str, Any]) -> list[str]:
    """The report in a few lines of text, for a terminal."""
    out = [f"{t['metricName']} {_short(t['source'])}: {t['value']:g}" for t in report["totals"]]
    for split in report["splits"]:
        arms = f"{_short(split['armB'])} over {_short(split['campaignArn'])}"
        for m in split["metrics"]:
            out.append(f"{m['metricName']} lift of {arms}: "
                       f"{_percent(m['lift'])} [{_percent(m['low'])}, {_percent(m['high'])}]")
    return out

