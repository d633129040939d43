import importlib.util
import json
import os
import signal

import jax.numpy as jnp
import pytest

from rewardsmith.errors import UserError
from rewardsmith.evolve import loop
from rewardsmith.evolve.loop import run

from conftest import tiny_cfg


def test_tiny_run_end_to_end(tmp_path):
    summary = run(tiny_cfg(), tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert summary["status"] == "complete"
    assert summary["task"] == "cartpole"
    assert "offline proposer" in summary["proposer"] and "no LLM" in summary["proposer"]
    assert summary["best_fitness"] is not None and summary["best_fitness"] > 0
    assert summary["human_baseline_fitness"] is not None and summary["sparse_baseline_fitness"] is not None
    assert [g["generation"] for g in summary["per_generation_best"]] == [0, 1]
    assert summary["wall_time_s"] > 0
    # every candidate is stored under its stable id with source, validation and statistics
    best_id = summary["best_candidate_id"]
    cdir = tmp_path / "generations" / f"gen_{int(best_id[1:3]):02d}" / "candidates" / best_id
    rec = json.loads((cdir / "candidate.json").read_text())
    assert rec["id"] == best_id and rec["validation"]["ok"] and rec["members"]
    assert (cdir / "reward.py").read_text() == rec["source"]
    assert len(rec["members"][0]["fitness_curve"]) >= 2
    assert (tmp_path / "baselines" / "baseline-human" / "candidate.json").exists()
    assert json.loads((tmp_path / "config.json").read_text())["task"]["name"] == "cartpole"
    # best_reward.py is standalone and importable
    spec = importlib.util.spec_from_file_location("best_reward", tmp_path / "best_reward.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from rewardsmith.tasks import get_task

    schema = get_task("cartpole").schema
    s = schema.make_state({n: jnp.float32(0.01) for n in schema.names})
    total, comps = mod.compute_reward(s, jnp.int32(1), s)
    assert jnp.isfinite(total) and set(comps) == set(mod.COMPONENTS)


def test_warm_worker_killed_mid_generation_is_restarted_and_nothing_is_lost(tmp_path, monkeypatch):
    """SIGKILL to the run's worker while it trains: that attempt's members fail with the reason, the
    generation is proposed again on a fresh worker, the run completes, and every record stays."""
    real = loop.WarmWorker.run
    seen = {"jobs": 0, "pids": []}

    def killing(self, job, workdir, **kw):
        seen["jobs"] += 1
        on_event = kw.pop("on_event", None)

        def watch(ev):
            if seen["jobs"] == 1 and ev.get("event") == "training" and self.pid:
                seen["pids"].append(self.pid)
                os.kill(self.pid, signal.SIGKILL)
            if on_event:
                on_event(ev)

        return real(self, job, workdir, on_event=watch, **kw)

    monkeypatch.setattr(loop.WarmWorker, "run", killing)
    summary = run(tiny_cfg(iterations=2, max_generation_retries=1), tmp_path)
    assert seen["jobs"] == 3 and len(seen["pids"]) == 1  # killed attempt, its retry, generation 1
    assert summary["status"] == "complete" and summary["best_fitness"] is not None
    gen0 = json.loads((tmp_path / "generations" / "gen_00" / "generation.json").read_text())
    assert "killed by signal 9" in gen0["worker_error"]
    failed = json.loads((tmp_path / "generations" / "gen_00" / "candidates" / gen0["candidate_ids"][0]
                         / "candidate.json").read_text())
    assert failed["status"] == "failed" and "worker failure" in failed["note"]
    retry = json.loads((tmp_path / "generations" / "gen_00" / "generation_retry1.json").read_text())
    assert retry["worker_error"] == "" and retry["best_fitness"] is not None
    assert (tmp_path / "generations" / "gen_01" / "generation.json").exists()
    # baselines were retried with the generation and trained
    assert summary["human_baseline_fitness"] is not None
    # two worker processes in all: the killed one and its replacement, which served the rest
    assert sorted(p.name for p in (tmp_path / "worker").glob("worker-*.log")) == ["worker-1.log", "worker-2.log"]


@pytest.mark.parametrize("over,msg", [
    ({"task": {"name": "nope", "file": None}}, "unknown task 'nope'; known tasks: ant, ant_spin, cartpole"),
    ({"train": {"bogus": 1}}, "unknown PPO settings: ['bogus']"),
    ({"samples": 0}, "samples must be a positive integer"),
    ({"llm": {"provider": "nope"}}, "unknown llm provider 'nope'"),
])
def test_bad_input_is_a_clear_error_before_any_work(tmp_path, over, msg):
    with pytest.raises(UserError) as e:
        run(tiny_cfg(**over), tmp_path / "run")
    assert msg in str(e.value)
    assert not (tmp_path / "run" / "generations").exists()


def test_halving_budget_records_env_steps_and_rungs_in_records_reflection_and_report(tmp_path):
    summary = run(tiny_cfg(budget="halving", iterations=1, samples=4, seeds=2), tmp_path)
    assert summary["status"] == "complete" and summary["budget"] == "halving"
    full = summary["env_steps_per_member"]
    cands = [json.loads(p.read_text()) for p in tmp_path.glob("generations/gen_00/candidates/*/candidate.json")]
    trained = [c for c in cands if c["members"]]
    assert trained
    early = [c for c in trained if c["rung"] < c["rungs"]]
    finished = [c for c in trained if c["rung"] == c["rungs"]]
    assert early and finished  # halving stopped some and at least one trained the whole budget
    assert all(c["env_steps"] == full * 2 for c in finished)
    assert all(c["env_steps"] < full * 2 for c in early)
    assert summary["env_steps"]["candidates"] == sum(c["env_steps"] for c in trained) < full * 2 * len(trained)
    assert summary["env_steps"]["stopped_early"] == len(early)
    # baselines are never stopped early: they are the yardstick
    for bid in ("baseline-human", "baseline-sparse"):
        b = json.loads((tmp_path / "baselines" / bid / "candidate.json").read_text())
        assert b["rung"] == b["rungs"] == 3 and b["env_steps"] == full * 2
    # the proposer is told, and so is the reader of the report
    gen = json.loads((tmp_path / "generations" / "gen_00" / "generation.json").read_text())
    assert f"candidate {early[0]['id']}" in gen["reflection"]
    assert "stopped early by successive halving at rung 1 of 3" in gen["reflection"] or \
        "stopped early at rung 1 of 3" in gen["reflection"]
    html = (tmp_path / "report.html").read_text()
    assert "stopped at rung" in html and "env steps trained" in html


@pytest.mark.parametrize("over,msg", [
    ({"budget": "greedy"}, "budget must be uniform or halving"),
    ({"budget": "halving", "halving": {"eta": 1}}, "halving eta must be an integer >= 2"),
    ({"budget": "halving", "halving": {"rungz": 2}}, "halving takes eta and rungs"),
    ({"budget": "halving", "train": {"program": "fused"}}, "budget=halving needs train.program=split"),
])
def test_bad_budget_settings_are_clear_errors(tmp_path, over, msg):
    with pytest.raises(UserError) as e:
        run(tiny_cfg(**over), tmp_path / "run")
    assert msg in str(e.value)
