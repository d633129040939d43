"""Offline rollout viewing: a self-contained HTML viewer (inline canvas script, no CDN), inline SVG
charts of the state fields and reward components over the episode, and an animated GIF drawn with
Pillow (headless; needs no OpenGL/EGL).

The stick figure draws each body as a dot and each parent-child link as a line, from recorded world
positions: a skeleton view of the motion, not a rendering of the meshes.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from rewardsmith.report.svg import chart
from rewardsmith.rundir import atomic_write_text

# One function per page; every viewer on the page calls it with its own data.
VIEWER_JS = """
function rsViewer(root, R) {
  const F = R.frames, P = R.parents, N = F.length, both = R.views.length > 1;
  root.innerHTML = '<div class="rs-row"><canvas width="420" height="240"></canvas>' +
    (both ? '<canvas width="420" height="240"></canvas>' : '') + '</div><div><button type="button">pause</button> ' +
    '<input type="range" min="0" value="0" style="width:260px"> <span></span></div>';
  const [side, top] = root.querySelectorAll('canvas'), btn = root.querySelector('button');
  const slider = root.querySelector('input'), lbl = root.querySelector('span');
  slider.max = N - 1;
  let i = 0, playing = true;
  function draw(cv, b) {
    const c = cv.getContext('2d'), W = cv.width, H = cv.height, f = F[i], cx = f[0][0];
    const cy = (b === 2) ? 0 : f[0][1], s = 90;
    c.clearRect(0, 0, W, H);
    c.strokeStyle = '#ddd'; c.lineWidth = 1; c.beginPath();
    for (let g = Math.floor(cx - 3); g <= cx + 3; g += 0.5) { const x = W/2 + (g - cx) * s; c.moveTo(x, 0); c.lineTo(x, H); }
    c.stroke();
    if (b === 2) { c.strokeStyle = '#888'; c.beginPath(); c.moveTo(0, H - 30); c.lineTo(W, H - 30); c.stroke(); }
    const X = p => W/2 + (p[0] - cx) * s, Y = p => (b === 2) ? H - 30 - p[2] * s : H/2 - (p[1] - cy) * s;
    c.strokeStyle = '#1f77b4'; c.lineWidth = 4; c.beginPath();
    for (let k = 0; k < P.length; k++) if (P[k] >= 0) { c.moveTo(X(f[P[k]]), Y(f[P[k]])); c.lineTo(X(f[k]), Y(f[k])); }
    c.stroke();
    for (let k = 0; k < f.length; k++) { c.fillStyle = k === 0 ? '#d62728' : '#333'; c.beginPath(); c.arc(X(f[k]), Y(f[k]), 4, 0, 7); c.fill(); }
  }
  function render() { draw(side, 2); if (both) draw(top, 1); slider.value = i;
    lbl.textContent = 'frame ' + (i + 1) + '/' + N + '  t=' + (i * R.dt).toFixed(2) + ' s  x=' + F[i][0][0].toFixed(2) + ' m'; }
  btn.onclick = () => { playing = !playing; btn.textContent = playing ? 'pause' : 'play'; };
  slider.oninput = () => { i = +slider.value; render(); };
  setInterval(() => { if (playing) { i = (i + 1) % N; render(); } }, Math.max(20, R.dt * 1000));
  render();
}
"""

VIEWER_CSS = (".rs-row{display:flex;gap:8px;flex-wrap:wrap}.rs-row canvas{border:1px solid #ccc;background:#fbfbfb}"
              ".chart text{font-size:11px;fill:#333}.chart .title{font-size:12px;font-weight:600}")


def viewer_block(rollout: dict, dom_id: str, views: tuple[str, ...] = ("side", "top")) -> str:
    """The animated stick figure (when the rollout has frames), for a page that includes VIEWER_JS:
    a side view (x forward, z up) and, with ``views=("side", "top")``, a top view (x forward, y left)."""
    if not rollout.get("frames"):
        return "<p class='sub'>This task has no stick figure; the charts show the episode.</p>"
    data = json.dumps({"frames": rollout["frames"], "parents": rollout["parents"], "dt": rollout["dt"],
                       "views": list(views)})
    data = data.replace("</", "<\\/")
    return (f"<div id='{html.escape(dom_id)}'></div><script>rsViewer(document.getElementById("
            f"{json.dumps(dom_id)}), {data});</script>")


def trace_charts(rollout: dict, max_fields: int = 12, width: int = 300, height: int = 170) -> str:
    """Small inline SVG charts: reward and components per step, then each state field over the episode."""
    stride, n = rollout.get("stride", 1), len(rollout.get("reward", []))
    t = [k * stride for k in range(n)]
    out = []
    series = [{"label": "total reward", "x": t, "y": rollout["reward"], "color": "#222"}]
    series += [{"label": name, "x": t, "y": v} for name, v in rollout.get("components", {}).items()]
    out.append(chart(series, "reward per step", "step", "reward", width=width * 2, height=height + 20))
    for name, v in list(rollout.get("fields", {}).items())[:max_fields]:
        out.append(chart([{"label": name, "x": t, "y": v}], name, "step", "", width=width, height=height))
    return "<div class='charts'>" + "".join(out) + "</div>"


def viewer_html(rollout: dict, title: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:system-ui,sans-serif;margin:16px;color:#222}}.charts{{display:flex;"
            f"flex-wrap:wrap;gap:8px}}{VIEWER_CSS}</style><script>{VIEWER_JS}</script></head><body>"
            f"<h2>{html.escape(title)}</h2><p>Deterministic policy, first evaluation episode: "
            f"{rollout.get('episode_steps')} steps (seed {rollout.get('seed')}). Skeleton view: bodies as dots, "
            f"joints as lines; left: side view (x forward, z up), right: top view (x forward, y left); the "
            f"camera follows the root body (red).</p>"
            f"{viewer_block(rollout, 'viewer')}{trace_charts(rollout)}</body></html>")


def write_viewer(rollout: dict, path: str | Path, title: str) -> Path:
    atomic_write_text(path, viewer_html(rollout, title))
    return Path(path)


def write_gif(rollout: dict, path: str | Path, size: tuple[int, int] = (360, 220)) -> Path:
    """Side view (x forward, z up), camera following the root body."""
    from PIL import Image, ImageDraw

    if not rollout.get("frames"):
        raise ValueError("the rollout has no body positions to draw")
    w, h = size
    scale = 80
    frames = []
    for f in rollout["frames"]:
        img = Image.new("RGB", size, (251, 251, 251))
        d = ImageDraw.Draw(img)
        cx = f[0][0]
        ground = h - 30
        d.line([(0, ground), (w, ground)], fill=(136, 136, 136), width=1)
        g = int(cx * 2) / 2 - 3
        while g < cx + 3:
            x = w / 2 + (g - cx) * scale
            d.line([(x, ground), (x, ground + 6)], fill=(160, 160, 160))
            g += 0.5

        def xy(p):
            return (w / 2 + (p[0] - cx) * scale, ground - p[2] * scale)

        for k, parent in enumerate(rollout["parents"]):
            if parent >= 0:
                d.line([xy(f[parent]), xy(f[k])], fill=(31, 119, 180), width=4)
        for k, p in enumerate(f):
            x, y = xy(p)
            col = (214, 39, 40) if k == 0 else (50, 50, 50)
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=col)
        frames.append(img)
    duration = max(20, int(rollout["dt"] * 1000))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0,
                   optimize=True)
    os.replace(tmp, path)
    return path


def rollout_files(directory: Path, title: str, display):
    """A rollout sink (``train.candidates.RolloutSink``) that writes ``<id>.json``, an offline viewer
    (``<id>.html``) and, for tasks that draw themselves, an animated GIF into ``directory``."""
    from rewardsmith.rundir import atomic_write_json

    def save(cand, rollout: dict) -> None:
        atomic_write_json(directory / f"{cand.id}.json", rollout)
        write_viewer(rollout, directory / f"{cand.id}.html", f"{title} · {cand.id}")
        if rollout.get("frames"):
            try:
                write_gif(rollout, directory / f"{cand.id}.gif")
            except Exception as e:  # noqa: BLE001 - the viewer is written; the GIF is a convenience
                display.message(f"rollout GIF for {cand.id} not written: {type(e).__name__}: {e}")
    return save
