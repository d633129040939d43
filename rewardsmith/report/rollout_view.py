"""Offline rollout viewing: a self-contained HTML stick-figure viewer (inline canvas script, no CDN)
and an animated GIF drawn with Pillow (headless; needs no OpenGL/EGL).

These draw each body as a dot and each parent-child link as a line, from recorded world positions:
a skeleton view of the motion, not a rendering of the meshes."""

from __future__ import annotations

import html
import json
from pathlib import Path

from rewardsmith.rundir import atomic_write_text

_VIEWER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>body{font-family:system-ui,sans-serif;margin:16px;color:#222}canvas{border:1px solid #ccc;background:#fbfbfb}
.row{display:flex;gap:12px;flex-wrap:wrap}button{font-size:14px}</style></head><body>
<h2>__TITLE__</h2><p>Skeleton view: bodies as dots, joints as lines. Left: side view (x forward, z up),
right: top view (x forward, y left). The camera follows the root body.</p>
<div class="row"><canvas id="side" width="520" height="320"></canvas><canvas id="top" width="520" height="320"></canvas></div>
<p><button id="play">pause</button> <input id="t" type="range" min="0" value="0" style="width:520px">
<span id="lbl"></span></p>
<script>
const R = __DATA__;
const F = R.frames, P = R.parents, N = F.length;
const slider = document.getElementById('t'); slider.max = N - 1;
let i = 0, playing = true;
function draw(cv, a, b) {
  const c = document.getElementById(cv).getContext('2d'), W = c.canvas.width, H = c.canvas.height;
  const f = F[i], cx = f[0][0], cy = (b === 2) ? 0 : f[0][1], s = 110;
  c.clearRect(0, 0, W, H);
  c.strokeStyle = '#ddd'; c.beginPath();
  for (let g = Math.floor(cx - 3); g <= cx + 3; g += 0.5) { const x = W/2 + (g - cx) * s; c.moveTo(x, 0); c.lineTo(x, H); }
  c.stroke();
  if (b === 2) { c.strokeStyle = '#888'; c.beginPath(); c.moveTo(0, H - 40); c.lineTo(W, H - 40); c.stroke(); }
  const X = p => W/2 + (p[0] - cx) * s, Y = p => (b === 2) ? H - 40 - p[2] * s : H/2 - (p[1] - cy) * s;
  c.strokeStyle = '#1f77b4'; c.lineWidth = 4; c.beginPath();
  for (let k = 0; k < P.length; k++) if (P[k] >= 0) { c.moveTo(X(f[P[k]]), Y(f[P[k]])); c.lineTo(X(f[k]), Y(f[k])); }
  c.stroke();
  for (let k = 0; k < f.length; k++) { c.fillStyle = k === 0 ? '#d62728' : '#333'; c.beginPath(); c.arc(X(f[k]), Y(f[k]), 4, 0, 7); c.fill(); }
}
function render() { draw('side', 0, 2); draw('top', 0, 1); slider.value = i;
  document.getElementById('lbl').textContent = `frame ${i + 1}/${N}  t=${(i * R.dt).toFixed(2)} s  x=${F[i][0][0].toFixed(2)} m`; }
document.getElementById('play').onclick = e => { playing = !playing; e.target.textContent = playing ? 'pause' : 'play'; };
slider.oninput = () => { i = +slider.value; render(); };
setInterval(() => { if (playing) { i = (i + 1) % N; render(); } }, Math.max(20, R.dt * 1000));
render();
</script></body></html>"""


def viewer_html(rollout: dict, title: str) -> str:
    data = json.dumps({"frames": rollout["frames"], "parents": rollout["parents"], "dt": rollout["dt"]})
    return _VIEWER.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def write_viewer(rollout: dict, path: str | Path, title: str) -> Path:
    atomic_write_text(path, viewer_html(rollout, title))
    return Path(path)


def write_gif(rollout: dict, path: str | Path, size: tuple[int, int] = (360, 220)) -> Path:
    """Side view (x forward, z up), camera following the root body."""
    from PIL import Image, ImageDraw

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
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=True)
    return Path(path)
