"""Tiny dependency-free SVG charts, inlined into report.html (no CDN, no JavaScript)."""

from __future__ import annotations

import html
import math
from typing import Sequence

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def _ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n - 1)
    if integer:
        raw = max(1.0, raw)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 0.5 and len(out) < 12:
        if v >= lo - step * 0.5:
            out.append(v)
        v += step
    return out


def _fmt(v: float) -> str:
    if abs(v) >= 10000 or (0 < abs(v) < 0.01):
        return f"{v:.1e}"
    return f"{v:g}" if float(v).is_integer() else f"{v:.3g}"


def chart(series: Sequence[dict], title: str, xlabel: str, ylabel: str, width: int = 560, height: int = 280,
          integer_x: bool = False) -> str:
    """``series``: dicts with label, x, y (None allowed), optional color, dashed, points_only."""
    pts = [(x, y) for s in series for x, y in zip(s["x"], s["y"]) if y is not None and math.isfinite(y)]
    if not pts:
        return f'<div class="empty">{html.escape(title)}: no data</div>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if integer_x:
        x0, x1 = x0 - 0.2, x1 + 0.2
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    ml, mr, mt, mb = 62, 12, 28, 44
    legend_h = 16 * ((len(series) + 2) // 3)
    h = height + legend_h
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x):
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return mt + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
           f'role="img" aria-label="{html.escape(title)}" class="chart">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{html.escape(title)}</text>',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in _ticks(y0, y1):
        if y0 <= t <= y1:
            out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                       f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    for t in _ticks(x0, x1, integer=integer_x):
        if x0 <= t <= x1:
            out.append(f'<text x="{sx(t):.1f}" y="{mt + ph + 16}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{mt + ph + 34}" text-anchor="middle" class="axis">{html.escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14,{mt + ph / 2}) rotate(-90)" text-anchor="middle" class="axis">'
               f'{html.escape(ylabel)}</text>')
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        seg = [(sx(x), sy(y)) for x, y in zip(s["x"], s["y"]) if y is not None and math.isfinite(y)]
        if not seg:
            continue
        if not s.get("points_only"):
            dash = ' stroke-dasharray="5,4"' if s.get("dashed") else ""
            path = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{y:.1f}" for j, (x, y) in enumerate(seg))
            out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in seg:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 if s.get("points_only") else 2}" fill="{color}"/>')
        lx = 10 + (i % 3) * (width // 3)
        ly = height + 4 + 16 * (i // 3)
        out.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{ly + 9}" class="legend">{html.escape(str(s["label"]))[:40]}</text>')
    out.append("</svg>")
    return "".join(out)
