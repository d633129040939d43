from __future__ import annotations

import html
import json
from pathlib import Path

from rewardsmith.records import Candidate
from rewardsmith.reflect.diagnostics import diagnose
from rewardsmith.reflect.text import mean_curves
from rewardsmith.report.svg import chart
from rewardsmith.rundir import RunDir, atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:6px 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.trained{color:#1a7f37}.rejected,.failed,.no_code{color:#c62828}.best{background:#fff8dc}
.charts{display:flex;flex-wrap:wrap;gap:12px} .chart text{font-size:11px;fill:#333} .chart .title{font-size:13px;font-weight:600}
pre{background:#f8f8f8;padding:10px;overflow-x:auto;font-size:12.5px;border:1px solid #eee}
.flag{color:#b00020;font-weight:600} details{margin:6px 0} summary{cursor:pointer}
.kv td:first-child{font-weight:600;background:#fafafa} .empty{color:#888;font-style:italic;padding:8px}
"""


def _num(x, digits=4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return html.escape(x)
    return f"{x:.{digits}g}"


def _e(x) -> str:
    return html.escape(str(x))


def _highlight(code: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=False, style="friendly"))
    except Exception:  # noqa: BLE001 - plain code when pygments is unavailable
        return f"<pre>{_e(code)}</pre>"


def _load_candidates(rd: RunDir) -> tuple[list[Candidate], dict[str, Candidate]]:
    cands = [Candidate.from_json(r) for r in rd.candidate_records()]
    base = {c.id: c for c in map(Candidate.from_json, rd.baseline_records())}
    return cands, base


def _steps_curve(c: Candidate, key: str) -> list[dict]:
    series = []
    for m in c.members:
        if not m.ok:
            continue
        series.append({"x": m.checkpoints, "y": getattr(m, key), "seed": m.seed})
    return series


def build_report(root: str | Path) -> str:
    rd = RunDir(root, create=False)
    root = rd.root
    if not rd.has_summary():
        raise FileNotFoundError(f"{root} is not a rewardsmith run directory (no {rd.SUMMARY})")
    summary = rd.read_summary()
    cands, baselines = _load_candidates(rd)
    by_id = {c.id: c for c in cands}
    gens = rd.generation_records()
    best = by_id.get(summary.best_candidate_id or "")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>rewardsmith · "
             f"{_e(summary.task)}</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>rewardsmith · {_e(summary.task)}</h1>")
    parts.append(f"<p class='sub'>{_e(summary.proposer)} · status {_e(summary.status)} · "
                 f"wall time {_num(summary.wall_time_s)} s · {_e(root.name)}</p>")

    # -- key numbers ------------------------------------------------------------------------------
    final = summary.final_evaluation or {}
    human = summary.human_baseline_label or "human baseline"
    rows = [("best candidate", _e(summary.best_candidate_id)),
            ("fitness (search)", f"{_num(summary.best_fitness)} ± {_num(summary.best_fitness_std)}"),
            (f"{human} (search)", _num(summary.human_baseline_fitness)),
            ("sparse baseline (search)", _num(summary.sparse_baseline_fitness)),
            ("fitness metric", _e(summary.fitness_doc))]
    race = summary.finals or {}
    if race:
        rows.append(("finals", f"top {len(race['finalists'])} trained on {len(race['seeds'])} more seeds each; "
                     + ", ".join(f"{_e(r['id'])} {_num(r['pooled_fitness'])} over {r['seeds']} seeds"
                                 for r in race["finalists"])
                     + f" → {_e(race['winner'])}"))
    if final:
        for k in ("best", "human", "sparse"):
            e = final.get(k) or {}
            rows.append((f"final evaluation: {k}", f"{_num(e.get('fitness_mean'))} ± {_num(e.get('fitness_std'))} "
                         f"over {len(final.get('eval_seeds', []))} seeds"))
    rows.append(("human-normalised score", f"{_num(summary.human_normalised_score)} "
                 f"<span class='sub'>({_e(summary.hns_formula)})</span>"))
    rows.append(("env steps per member", _e(summary.env_steps_per_member)))
    spent = summary.env_steps or {}
    if spent:
        rows.append(("env steps trained", f"{spent.get('candidates', 0):,} by candidates, "
                     f"{spent.get('baselines', 0):,} by baselines · budget {_e(summary.budget)}"
                     + (f", {spent['stopped_early']} candidate(s) stopped early" if spent.get("stopped_early") else "")))
    rows.append(("selection", _e(summary.selection)))
    pf = summary.prefilter
    if pf:
        rows.append(("pre-filter", f"{_e(pf.get('mode'))}: {_e(pf.get('judged'))} candidate(s) judged on stored episodes, "
                     f"{len(pf.get('skipped') or [])} not trained ({_e(', '.join(pf.get('skipped') or []) or 'none')}), "
                     f"{(pf.get('env_steps_saved') or 0):,} env steps saved"
                     + (f"; flagged but trained: {_e(', '.join(pf['flagged_but_trained']))}"
                        if pf.get("flagged_but_trained") else "")))
    sb = summary.sandbox
    if sb:
        lim = sb.get("limits") or {}
        rows.append(("worker sandbox", f"network: {_e(sb.get('network'))} · files: {_e(sb.get('filesystem'))} · "
                     f"processes: {_e(sb.get('processes'))} · "
                     + (f"mounts: {_e(', '.join(sb['mounts'].get('hidden') or []))} private, "
                        f"{_e(sb['mounts'].get('read_only'))} read-only, /proc {_e(sb['mounts'].get('proc'))} · "
                        if isinstance(sb.get("mounts"), dict) and "error" not in sb["mounts"] else "")
                     + f"{_e(sb.get('user') or '')} · memory cap: "
                     f"{_e(str(lim.get('memory_mb')) + ' MB' if lim.get('memory_mb') else 'none')}"
                     + (f" · <span class='flag'>missing: {_e(', '.join(sb['missing']))}</span>"
                        if sb.get("missing") else "")))
    hf = summary.human_feedback
    if hf:
        ratings = ", ".join(f"{_e(k)} {v:g}" for k, v in sorted(hf["preference_ratings"].items(),
                                                               key=lambda kv: -kv[1]))
        rows.append(("human feedback", f"on generation(s) {_e(hf['generations'])}; Elo: {ratings or 'none'}"))
    llm = summary.llm
    if llm:
        rows.append(("LLM", f"{_e(llm.get('model'))}: {llm.get('calls')} calls ({llm.get('cached_calls')} cached), "
                     f"{llm.get('prompt_tokens')} prompt + {llm.get('completion_tokens')} completion tokens, "
                     f"cost {_e(llm.get('cost_usd'))} USD"))
    if summary.stopped_by_budget:
        rows.append(("stopped", _e(summary.stopped_by_budget)))
    parts.append("<table class='kv'>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>")

    # -- charts -----------------------------------------------------------------------------------
    parts.append("<h2>Fitness over generations</h2><div class='charts'>")
    pts = [c for c in cands if c.fitness is not None]
    series = [{"label": "candidates", "x": [c.generation for c in pts], "y": [c.fitness for c in pts],
               "points_only": True, "color": "#9ecae1"}]
    pg = summary.per_generation_best or []
    run_best, acc = [], None
    for g in pg:
        if g.get("best_fitness") is not None:
            acc = g["best_fitness"] if acc is None else max(acc, g["best_fitness"])
        run_best.append(acc)
    series.append({"label": "best so far", "x": [g["generation"] for g in pg], "y": run_best, "color": "#08519c"})
    for key, label, color in (("human_baseline_fitness", summary.human_baseline_label or "human baseline", "#2ca02c"),
                              ("sparse_baseline_fitness", "sparse baseline", "#7f7f7f")):
        if getattr(summary, key) is not None and pg:
            series.append({"label": label, "x": [pg[0]["generation"], pg[-1]["generation"]],
                           "y": [getattr(summary, key)] * 2, "dashed": True, "color": color})
    parts.append(chart(series, "task fitness of every trained candidate", "generation", "fitness", integer_x=True))
    parts.append("</div>")

    parts.append("<h2>Training curves</h2><div class='charts'>")
    curve_series = []
    for label, c in [("best " + (best.id if best else ""), best)] + [(k, v) for k, v in baselines.items()]:
        if c is None:
            continue
        for s in _steps_curve(c, "fitness_curve"):
            curve_series.append({"label": f"{label} seed {s['seed']}", "x": s["x"], "y": s["y"],
                                 "dashed": c.origin.startswith("baseline")})
    parts.append(chart(curve_series, "task fitness during training (completed episodes)", "env steps", "fitness"))
    if best is not None:
        mc = mean_curves(best)
        steps = next((m.checkpoints for m in best.members if m.ok), [])
        comp_series = [{"label": k.replace("component ", ""), "x": steps, "y": v}
                       for k, v in mc.items() if k.startswith("component ")]
        comp_series.append({"label": "total reward", "x": steps, "y": mc.get("total reward", []), "dashed": True})
        parts.append(chart(comp_series, f"reward components of {best.id} (mean over seeds)", "env steps",
                           "mean per step"))
    parts.append("</div>")

    # -- rollouts -----------------------------------------------------------------------------------
    gifs = sorted(rd.final_rollouts_dir.glob("*.gif"))
    if gifs:
        import base64

        parts.append("<h2>Rollouts (final evaluation, deterministic policy)</h2><div class='charts'>")
        for g in gifs:
            data = base64.b64encode(g.read_bytes()).decode("ascii")
            label = {"final-best": "best candidate", "final-human": summary.human_baseline_label or "human baseline",
                     "final-sparse": "sparse baseline"}.get(g.stem, g.stem)
            parts.append(f"<figure><img alt='rollout of {_e(label)}' src='data:image/gif;base64,{data}'>"
                         f"<figcaption>{_e(label)} · <a href='{_e(g.with_suffix('.html').relative_to(root).as_posix())}'>interactive "
                         f"viewer</a></figcaption></figure>")
        parts.append("</div>")

    # -- best code ----------------------------------------------------------------------------------
    if best is not None:
        parts.append(f"<h2>Best reward: {_e(best.id)}</h2>")
        comps = {k[len('component '):]: v for k, v in mean_curves(best).items() if k.startswith("component ")}
        mc = mean_curves(best)
        if mc:
            d = diagnose(comps, mc["total reward"], mc["task fitness"])
            if d.lines():
                parts.append("<ul>" + "".join(f"<li class='{'flag' if 'HACKING' in ln else ''}'>{_e(ln)}</li>"
                                              for ln in d.lines()) + "</ul>")
        parts.append(_highlight(best.source))

    parts.append(_archive_section(root))

    # -- generations ------------------------------------------------------------------------------
    parts.append("<h2>Generations</h2>")
    for g in gens:
        title = f"generation {g['index']}" + (f" (retry {g['attempt']})" if g["attempt"] else "")
        parts.append(f"<h3>{title} · {_num(g.get('wall_s'))} s</h3>")
        if g.get("worker_error"):
            parts.append(f"<p class='flag'>{_e(g['worker_error'])}</p>")
        parts.append("<table><tr><th>candidate</th><th>origin</th><th>status</th><th>fitness</th>"
                     "<th>env steps</th><th>note / rejection reason</th><th>flags</th></tr>")
        for cid in g["candidate_ids"]:
            c = by_id.get(cid)
            if c is None:
                continue
            reason = c.validation.reason if c.validation is not None and not c.validation.ok else c.note
            if c.status == "no_code" and c.validation is not None and c.validation.details:
                reason += " (" + "; ".join(c.validation.details) + ")"
            mc = mean_curves(c)
            flags = ""
            if mc:
                comps = {k[len('component '):]: v for k, v in mc.items() if k.startswith("component ")}
                d = diagnose(comps, mc["total reward"], mc["task fitness"])
                flags = "<span class='flag'>reward hacking?</span>" if d.hacking else ""
                if d.dominant:
                    flags += f" {_e(d.dominant)} dominates"
            cls = "best" if best is not None and cid == best.id else ""
            fit = f"{_num(c.fitness)} ± {_num(c.fitness_std)}" if c.fitness is not None else ""
            steps = f"{c.env_steps:,}" if c.env_steps else ""
            if c.stopped_early:
                steps += f" <span class='sub'>(stopped at rung {c.rung} of {c.rungs})</span>"
            parts.append(f"<tr class='{cls}'><td><details><summary>{_e(cid)}</summary>{_highlight(c.source)}"
                         f"</details></td><td>{_e(c.origin)}</td><td class='{_e(c.status)}'>{_e(c.status)}</td>"
                         f"<td class='num'>{fit}</td><td class='num'>{steps}</td><td>{_e(reason)}</td>"
                         f"<td>{flags}</td></tr>")
        parts.append("</table>")
        if g.get("human_feedback"):
            parts.append(f"<details open><summary>human feedback given to this generation's proposer</summary>"
                         f"<pre>{_e(g['human_feedback'])}</pre></details>")
        if g.get("reflection"):
            parts.append(f"<details><summary>feedback text built from this generation</summary>"
                         f"<pre>{_e(g['reflection'])}</pre></details>")

    if baselines:
        parts.append("<h2>Baselines</h2>")
        for c in baselines.values():
            parts.append(f"<h3>{_e(c.id)}: fitness {_num(c.fitness)} ± {_num(c.fitness_std)}</h3>{_highlight(c.source)}")

    parts.append("<h2>Configuration</h2>")
    if rd.config_path.is_file():
        parts.append(f"<pre>{_e(json.dumps(rd.read_config(), indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _archive_section(root) -> str:
    """search=archive: the MAP-Elites grid (archive.json): each cell's elite and its fitness."""
    path = Path(root) / "archive.json"
    if not path.is_file():
        return ""
    try:
        a = json.loads(path.read_text(encoding="utf-8"))
        fields, edges, cells, fitness = a["fields"], a["edges"], a["cells"], a["fitness"]
    except (OSError, ValueError, KeyError):
        return ""
    if len(fields) != 2:
        return ""

    def bounds(j: int, i: int) -> str:
        e = edges[j]
        lo = f"{e[i - 1]:.3g}" if i > 0 else "-inf"
        hi = f"{e[i]:.3g}" if i < len(e) else "inf"
        return f"{lo} .. {hi}"
    rows = [f"<tr><th>{_e(fields[0])} \\ {_e(fields[1])}</th>"
            + "".join(f"<th>{_e(bounds(1, j))}</th>" for j in range(len(edges[1]) + 1)) + "</tr>"]
    for i in range(len(edges[0]) + 1):
        tds = []
        for j in range(len(edges[1]) + 1):
            cid = cells.get(f"{i},{j}")
            tds.append(f"<td>{_e(cid)}<br>{_num(fitness.get(cid))}</td>" if cid else "<td></td>")
        rows.append(f"<tr><th>{_e(bounds(0, i))}</th>{''.join(tds)}</tr>")
    return (f"<h2>Archive (search=archive)</h2><p class='sub'>{len(set(cells.values()))} elite(s) in "
            f"{len(cells)} cell(s) of what the policies did (episode means of {_e(', '.join(fields))}); "
            "each cell keeps its fittest candidate</p><table>" + "".join(rows) + "</table>")


def write_report(root: str | Path) -> Path:
    out = RunDir(root, create=False).report_path
    atomic_write_text(out, build_report(root))
    return out
