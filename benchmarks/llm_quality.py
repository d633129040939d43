"""How good are an LLM's answers, and does the LLM path beat the offline search? Two modes.

``answers``: K answers to a task's generation-0 prompt, built exactly as the LLM proposer builds it,
each counted: has a code block defining ``compute_reward``, passes the static gate
(``rewardsmith.validate.static.check_source``), passes the trace check (load and ``jax.eval_shape`` on
the schema's fields, each answer in a limited process of its own), with the seconds and tokens of
each answer. With ``--repair`` the mechanical repairs (``rewardsmith.propose.repair``) are applied
first and counted; with ``--propose`` the whole proposer runs instead (repairs, then the error fed back
for up to ``max_attempts`` answers per sample), so the count is what a generation would train.

    python benchmarks/llm_quality.py answers --task cartpole -k 10 --api-base http://127.0.0.1:18282/v1

``runs``: the real command (``rewardsmith task=T``) with ``llm=local`` and with the offline proposer at
the same training budget, ``--runs`` seeds each, and one table: share of proposals that train per
generation, repairs applied, answers fixed by error feedback, best final fitness, HNS, LLM seconds
and training seconds (the LLM's replay cache is off, so every answer is asked for and timed). Run
folders are kept under ``--out``; a finished run is read, not repeated.

    python benchmarks/llm_quality.py runs --tasks cartpole,pendulum --runs 1 --api-base http://127.0.0.1:18282/v1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _settings(args) -> "LLMSettings":  # noqa: F821
    from rewardsmith.propose.llm_client import LLMSettings

    cfg = {"provider": "local" if args.local else "openai_compatible", "model": args.model,
           "api_base": args.api_base, "cache": "off", "timeout_s": args.timeout_s, "max_retries": 1,
           "concurrency": 1, "n_mode": "fanout", "temperature": args.temperature, "max_attempts": args.max_attempts}
    if args.max_tokens:  # else llm=local's 640 (or the dataclass default)
        cfg["max_tokens_per_call"] = args.max_tokens
    if args.prompts_dir:
        cfg["prompts_dir"] = args.prompts_dir
    for kv in args.set or []:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v) if v[:1] in "[{0123456789-tfn" and v not in ("none",) else v
    return LLMSettings.from_cfg(cfg)


def trace_all(sources: dict[str, str], task) -> dict:
    """Load and trace each source in a limited process of its own (it is model-written code)."""
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.isolation.child import scrubbed_env
    from rewardsmith.validate.isolate import check_isolated

    return check_isolated(list(sources.items()), task.schema.to_json(), MAX_COMPONENTS, env=scrubbed_env())


def answers(args) -> dict:
    from rewardsmith.propose.base import ProposalContext
    from rewardsmith.propose.llm import LLMProposer, extract_code
    from rewardsmith.tasks import get_task
    from rewardsmith.validate.static import check_source

    task = get_task(args.task)
    settings = _settings(args)
    # the proposer's conversations (every answer and the error fed back) beside the saved counts
    keep = Path(args.save).with_suffix("") if args.save else None
    proposer = LLMProposer(settings, run_dir=keep)
    proposer.preflight()
    rows: list[dict] = []
    try:
        if args.propose:
            ctx = ProposalContext(task=task, generation=0, k=args.k, history=[], seed=args.seed)
            t0 = time.perf_counter()
            props = proposer.propose(ctx)
            wall = time.perf_counter() - t0
            for p in props:
                atts = p.meta.get("attempts") or []
                rows.append({"slot": p.meta.get("slot"), "code": p.source or None, "attempts": len(atts),
                             "repairs": p.meta.get("repairs") or [], "errors": [a["error"] for a in atts],
                             "provider_error": p.provider_error})
        else:
            ctx = ProposalContext(task=task, generation=0, k=args.k, history=[], seed=args.seed)
            msgs = proposer.messages(ctx)
            t0 = time.perf_counter()
            for s in range(args.k):
                n0 = len(proposer.client.calls)
                try:
                    text = proposer.client.complete(msgs, [s], generation=0, attempt=0, seed=args.seed)[0]
                    err = ""
                except Exception as e:  # noqa: BLE001
                    text, err = "", f"{type(e).__name__}: {e}"
                calls = proposer.client.calls[n0:]
                code = extract_code(text)
                repairs: list[str] = []
                if code is not None and args.repair:
                    from rewardsmith.propose.repair import repair_source

                    code, repairs, _ = repair_source(code, task.schema.names)
                rows.append({"slot": s, "code": code, "text": text, "provider_error": err, "repairs": repairs,
                             "seconds": round(sum(c.seconds for c in calls), 2),
                             "completion_tokens": sum(c.completion_tokens or 0 for c in calls),
                             "prompt_tokens": sum(c.prompt_tokens or 0 for c in calls)})
            wall = time.perf_counter() - t0
    finally:
        close = getattr(proposer, "close", None)
        if close:
            close()
    for r in rows:
        r["gate"] = [str(v) for v in check_source(r["code"], task.schema.names)] if r["code"] else None
    traced = trace_all({f"s{r['slot']}": r["code"] for r in rows if r["code"] and not r["gate"]}, task)
    for r in rows:
        v = traced.get(f"s{r['slot']}")
        r["trace"] = None if v is None else ("" if v.ok else v.reason)
    calls = proposer.client.calls
    n = len(rows)
    out = {
        "task": args.task, "k": args.k, "mode": "propose" if args.propose else "answers", "repair": args.repair,
        "settings": {k: getattr(settings, k) for k in ("model", "temperature", "max_tokens_per_call")}
        | {k: getattr(settings, k, None) for k in ("stop", "seed_requests", "threads")},
        "with_code": sum(1 for r in rows if r["code"]),
        "pass_gate": sum(1 for r in rows if r["code"] and not r["gate"]),
        "pass_trace": sum(1 for r in rows if r["trace"] == ""),
        "repaired": sum(1 for r in rows if r["repairs"]),
        "repairs": sorted({x for r in rows for x in r["repairs"]}),
        "requests": len(calls),
        "seconds_per_request": round(statistics.mean(c.seconds for c in calls), 2) if calls else None,
        "completion_tokens_per_request": round(statistics.mean(c.completion_tokens or 0 for c in calls), 1)
        if calls else None,
        "prompt_tokens_per_request": round(statistics.mean(c.prompt_tokens or 0 for c in calls), 1) if calls else None,
        "llm_seconds": round(sum(c.seconds for c in calls), 1),
        "tokens_per_s": round(sum(c.completion_tokens or 0 for c in calls) / max(1e-9, sum(c.seconds for c in calls)), 1),
        "wall_s": round(wall, 1), "n": n, "rows": rows,
    }
    return out


def _print_answers(out: dict) -> None:
    print(f"{out['task']} ({out['mode']}{', repair' if out['repair'] else ''}): {out['n']} samples, "
          f"code {out['with_code']}, gate {out['pass_gate']}, trace {out['pass_trace']}, repaired {out['repaired']} "
          f"{out['repairs']}; {out['requests']} requests, {out['seconds_per_request']} s and "
          f"{out['completion_tokens_per_request']} completion / {out['prompt_tokens_per_request']} prompt tokens "
          f"per request, {out['tokens_per_s']} tokens/s, LLM {out['llm_seconds']} s, wall {out['wall_s']} s")
    for r in out["rows"]:
        why = r["provider_error"] or ("no code" if not r["code"] else (r["gate"][0] if r["gate"] else
                                                                       (r["trace"] or "ok")))
        print(f"  slot {r['slot']}: {why[:160]}" + (f"  repairs={r['repairs']}" if r["repairs"] else ""))


# -- runs ---------------------------------------------------------------------------------------------

def one_run(task: str, seed: int, proposer: str, root: Path, extra: list[str]) -> dict:
    run_dir = root / f"{task}-{proposer}-{seed}"
    summary_path = run_dir / "summary.json"
    if not (summary_path.exists() and json.loads(summary_path.read_text()).get("status") == "complete"):
        cmd = [sys.executable, "-m", "rewardsmith.cli.main", f"task={task}", f"seed={seed}", "live=false",
               f"run_dir={run_dir}", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        (run_dir / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return read_run(run_dir)


def read_run(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    final = s.get("final_evaluation") or {}
    per_gen, train_s = [], []
    for g in sorted((run_dir / "generations").glob("gen_*")):
        rec = json.loads((g / "generation.json").read_text()) if (g / "generation.json").is_file() else {}
        if rec.get("train_s") is not None:
            train_s.append(rec["train_s"])
        cands = [json.loads(p.read_text()) for p in g.glob("candidates/*/candidate.json")]
        mine = [c for c in cands if not c["origin"].startswith(("baseline", "seed"))]
        trained = [c for c in mine if c["status"] == "trained"]
        repaired = [c for c in mine if (c.get("meta") or {}).get("repairs")]
        fixed = [c for c in mine if c["status"] == "trained" and len((c.get("meta") or {}).get("attempts") or []) > 1]
        per_gen.append({"generation": int(g.name[4:]), "proposals": len(mine), "trained": len(trained),
                        "repaired": len(repaired), "fixed_by_feedback": len(fixed)})
    llm = s.get("llm") or {}
    gens = {int(k): v for k, v in (llm.get("per_generation") or {}).items()}
    return {"run_dir": str(run_dir), "best": (final.get("best") or {}).get("fitness_mean"),
            "hns": s.get("human_normalised_score"), "per_generation": per_gen,
            "llm_seconds": llm.get("seconds"), "llm_seconds_per_gen": [gens[k].get("seconds") for k in sorted(gens)],
            "completion_tokens": llm.get("completion_tokens"),
            "train_seconds": train_s, "wall_s": s.get("wall_time_s")}


def runs(args) -> None:
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    # the replay cache off: every answer is asked for again, so the LLM seconds are what it costs
    llm_extra = ["llm=local", "llm.cache=off"] + ([f"llm.api_base={args.api_base}"] if args.api_base else
                                                  [f"llm.model_path={args.model_path}"])
    common = [f"iterations={args.iterations}", f"samples={args.samples}", *args.extra]
    table = []
    for task in args.tasks.split(","):
        for proposer, extra in (("offline", ["llm=offline"]), ("local", llm_extra)):
            rs = [one_run(task, seed, proposer, root, extra + common) for seed in range(args.runs)]
            table.append({"task": task, "proposer": proposer, "runs": rs})
            print(json.dumps(_row(task, proposer, rs)), flush=True)
    (root / "table.json").write_text(json.dumps(table, indent=1))
    print("\n| task | proposer | runs | trained / proposed per generation | repaired | fixed by feedback | "
          "best final fitness | HNS | LLM s / gen | train s / gen |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in table:
        r = _row(t["task"], t["proposer"], t["runs"])
        print(f"| {r['task']} | {r['proposer']} | {r['runs']} | {r['trained']} | {r['repaired']} | {r['fixed']} | "
              f"{r['best']} | {r['hns']} | {r['llm_s']} | {r['train_s']} |")


def _ms(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.mean(xs):.3g}" + (f" ± {statistics.stdev(xs):.2g}" if len(xs) > 1 else "")


def _row(task: str, proposer: str, rs: list[dict]) -> dict:
    n_gen = max(len(r["per_generation"]) for r in rs)
    trained = []
    for g in range(n_gen):
        t = sum(r["per_generation"][g]["trained"] for r in rs if g < len(r["per_generation"]))
        p = sum(r["per_generation"][g]["proposals"] for r in rs if g < len(r["per_generation"]))
        trained.append(f"{t}/{p}")
    rep = sum(g["repaired"] for r in rs for g in r["per_generation"])
    fixed = sum(g["fixed_by_feedback"] for r in rs for g in r["per_generation"])
    llm = [x for r in rs for x in (r["llm_seconds_per_gen"] or [])]
    train = [x for r in rs for x in (r["train_seconds"] or [])]
    return {"task": task, "proposer": proposer, "runs": len(rs), "trained": ", ".join(trained), "repaired": rep,
            "fixed": fixed, "best": _ms([r["best"] for r in rs]), "hns": _ms([r["hns"] for r in rs]),
            "llm_s": _ms(llm) if proposer != "offline" else "-", "train_s": _ms(train)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("answers")
    a.add_argument("--task", default="cartpole")
    a.add_argument("-k", type=int, default=10)
    a.add_argument("--api-base", required=True)
    a.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    a.add_argument("--local", action="store_true", help="llm=local's settings (stop, seed, fitted max_tokens)")
    a.add_argument("--max-tokens", type=int, default=None)
    a.add_argument("--temperature", type=float, default=1.0)
    a.add_argument("--timeout-s", type=float, default=300.0)
    a.add_argument("--max-attempts", type=int, default=3)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--repair", action="store_true")
    a.add_argument("--propose", action="store_true", help="the whole proposer: repairs and error feedback")
    a.add_argument("--prompts-dir", default=None)
    a.add_argument("--set", action="append", help="another llm setting, KEY=VALUE")
    a.add_argument("--save", default=None, help="write every answer and count to this JSON file")
    r = sub.add_parser("runs")
    r.add_argument("--tasks", default="cartpole,pendulum")
    r.add_argument("--runs", type=int, default=1)
    r.add_argument("--iterations", type=int, default=2)
    r.add_argument("--samples", type=int, default=4)
    r.add_argument("--api-base", default=None)
    r.add_argument("--model-path", default=None)
    r.add_argument("--out", default="outputs/benchmarks/llm_quality")
    r.add_argument("--extra", nargs="*", default=[])
    args = ap.parse_args()
    if args.mode == "answers":
        out = answers(args)
        _print_answers(out)
        if args.save:
            Path(args.save).write_text(json.dumps(out, indent=1))
    else:
        runs(args)


if __name__ == "__main__":
    main()
