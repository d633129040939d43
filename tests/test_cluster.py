"""executor=ray and sweeps through hydra's Ray launcher. Every Ray process runs inside a network
namespace the test creates (``unshare -rn``, loopback up), so nothing binds another address."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rewardsmith.errors import UserError
from rewardsmith.train.cluster import (RaySettings, ShardOutcome, executor_settings, merge_results, plan_shards,
                                       split_job)
from rewardsmith.train.job import JobCandidate, TaskRef, TrainJob, TrainResult
from rewardsmith.train.ppo import PPOConfig

HERE = Path(__file__).resolve().parent


def _netns_ok() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        return subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_netns = pytest.mark.skipif(not _netns_ok(), reason="no user network namespaces here (unshare -rn)")


def _in_netns(*cmd: str, timeout: float, home: Path) -> subprocess.CompletedProcess:
    """``cmd`` in a network namespace of its own. Ray there uses token authentication with a token
    made for the test, and a home folder of the test's (Ray writes ~/.ray/ otherwise)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    script = "ip link set lo up && exec \"$@\""
    return subprocess.run(["unshare", "-rn", "sh", "-c", script, "sh", *cmd], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(HERE.parent))


# -- splitting a generation (no cluster) ------------------------------------------------------------
def _node(cpu=0, gpu=0, alive=True):
    res = {"CPU": float(cpu), "memory": 1e9}
    if gpu:
        res["GPU"] = float(gpu)
    return {"NodeID": f"n{cpu}{gpu}", "Alive": alive, "Resources": res}


def test_shards_are_sized_to_the_cluster():
    s = RaySettings()
    # CPU nodes: one shard per node, at the smallest node's CPUs (a retried shard fits anywhere)
    assert plan_shards([_node(0), _node(1), _node(1)], s) == (p := plan_shards([_node(1), _node(1)], s))
    assert (p.count, p.num_cpus, p.num_gpus) == (2, 1, 0)
    p = plan_shards([_node(8), _node(4), _node(4, alive=False)], s)
    assert (p.count, p.num_cpus) == (3, 4)  # 8 + 4 CPUs in shards of 4; the dead node is not counted
    # GPU nodes: one shard per node's GPUs
    p = plan_shards([_node(16, 8), _node(16, 8), _node(4)], s)
    assert (p.count, p.num_gpus, p.num_cpus) == (2, 8, 1)
    p = plan_shards([_node(16, 8)], RaySettings(num_gpus=1, num_cpus=2))
    assert (p.count, p.num_gpus, p.num_cpus) == (8, 1, 2)
    assert plan_shards([_node(16, 8)], RaySettings(num_gpus=0)).num_gpus == 0
    assert plan_shards([_node(2), _node(2)], RaySettings(shards=5)).count == 5
    with pytest.raises(UserError, match="no node"):
        plan_shards([_node(2)], RaySettings(num_cpus=4))
    with pytest.raises(UserError, match="no node with a CPU"):
        plan_shards([_node(0)], s)


def test_a_job_splits_by_candidate_and_merges_back():
    job = TrainJob(task=TaskRef("cartpole"), ppo=PPOConfig(), seeds=(0, 1), population_size=16,
                   candidates=tuple(JobCandidate(id=f"c{i}", source="") for i in range(7)))
    shards = split_job(job, 3)
    assert [s.ids for s in shards] == [["c0", "c1", "c2"], ["c3", "c4"], ["c5", "c6"]]
    # each shard pads to its share of the run's usual generation (8 candidates x 2 seeds over 3 shards)
    assert {s.population_size for s in shards} == {6}
    assert len(split_job(job, 20)) == 7  # never an empty shard
    # a shard's job crosses Ray and the worker's file as JSON and comes back the same
    assert all(TrainJob.from_json(s.to_json()) == s for s in shards)

    def res(ids, t):
        return TrainResult.from_json({"candidates": {i: {"validation": {"ok": True, "stage": "passed"}, "members": []}
                                                     for i in ids},
                                      "timing": {"train_s": t, "program": "split"}})

    outcomes = [ShardOutcome(result=res(["c0", "c1", "c2"], 3.0), node_id="A", node_ip="127.0.0.1", attempts=[{}]),
                ShardOutcome(error="shard 1 lost after 3 attempt(s): NodeDiedError", node_id="B", attempts=[{}, {}, {}]),
                ShardOutcome(result=res(["c5", "c6"], 5.0), node_id="A", node_ip="127.0.0.1", attempts=[{}])]
    merged = merge_results(shards, outcomes, wall_s=9.0)
    assert sorted(merged.candidates) == ["c0", "c1", "c2", "c5", "c6"]
    assert merged.failed == {"c3": outcomes[1].error, "c4": outcomes[1].error}
    assert merged.placement["c4"]["node_id"] == "B" and len(merged.placement["c4"]["attempts"]) == 3
    assert merged.timing == {"train_s": 5.0, "program": "split", "total_s": 9.0}
    assert TrainResult.from_json(merged.to_json()) == merged


def test_executor_settings_are_checked():
    assert executor_settings({}) is None and executor_settings({"executor": {"name": "local"}}) is None
    s = executor_settings({"executor": {"name": "ray", "address": "auto", "shards": "auto", "max_retries": 1}})
    assert (s.address, s.shards, s.max_retries) == ("auto", None, 1)
    for bad, match in [({"name": "slurm"}, "local or ray"), ({"name": "ray", "shards": 0}, "shards"),
                       ({"name": "ray", "max_retries": -1}, "max_retries"), ({"name": "ray", "adress": "x"}, "adress"),
                       ({"name": "ray", "address": ""}, "address")]:
        with pytest.raises(UserError, match=match):
            executor_settings({"executor": bad})


def test_ray_address_from_the_environment_is_used_when_no_address_is_set(monkeypatch, tmp_path):
    """As Ray's own ray.init() does: RAY_ADDRESS names the cluster when executor.address is unset
    (and the run says so); an explicit address still wins; no private cluster is started."""
    import ray

    from rewardsmith.train import cluster

    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    s = executor_settings({"executor": {"name": "ray"}})
    assert s.address == "10.1.2.3:6379" and s.address_from_env
    assert executor_settings({"executor": {"name": "ray", "address": "auto"}}).address == "auto"
    with pytest.raises(UserError, match="address_from_env"):
        executor_settings({"executor": {"name": "ray", "address_from_env": True}})
    messages, inits = [], []

    class Display:
        def message(self, text):
            messages.append(text)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: inits.append(address))
    monkeypatch.setattr(cluster, "LocalCluster", lambda *a, **k: pytest.fail("a private cluster was started"))
    ex = cluster.make_executor(cluster.executor_settings({"executor": {"name": "ray"}}), tmp_path, None, Display())
    ex.connect()
    assert inits == ["10.1.2.3:6379"] and any("RAY_ADDRESS=10.1.2.3:6379" in m for m in messages)
    monkeypatch.delenv("RAY_ADDRESS")
    assert executor_settings({"executor": {"name": "ray"}}).address is None


def test_halving_is_refused_on_ray():
    from rewardsmith.evolve.settings import RunSettings

    with pytest.raises(UserError, match="halving runs on executor=local"):
        RunSettings.from_cfg({"task": {"name": "cartpole"}, "budget": "halving", "executor": {"name": "ray"}})


# -- real clusters ------------------------------------------------------------------------------------
@needs_netns
def test_a_generation_survives_losing_a_node(tmp_path):
    """Head + two one-CPU worker nodes (separate processes); a worker node is killed mid-generation:
    its shard is retried on the other node. Then with no retries left the lost shard's candidates fail
    with the reason while the rest train, and that run is resumed for one more generation."""
    proc = _in_netns(sys.executable, str(HERE / "ray_cluster.py"), "faults", str(tmp_path), timeout=1200,
                     home=tmp_path / "home")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    workers = set(out["workers"])
    assert len(workers) == 2

    # 1. retried: every candidate trained; the records name both worker nodes
    assert out["retried"]["status"] == "complete" and out["retried"]["killed"] in workers
    cands = _records(tmp_path / "retried")
    assert cands and all(c["status"] == "trained" for c in cands), [(c["id"], c["status"], c["note"]) for c in cands]
    final_nodes = {c["placement"]["node_id"] for c in cands}
    tried = {a["node_id"] for c in cands for a in c["placement"]["attempts"]}
    assert tried == workers  # both worker nodes ran shards
    assert final_nodes == workers - {out["retried"]["killed"]}  # the lost shard finished on the survivor
    # the lost shard's candidates: first tried on the killed node, finished on the survivor (Ray may
    # place a retry on the killed node once more before it has marked it dead: 2 or 3 attempts)
    lost = [c for c in cands if len(c["placement"]["attempts"]) >= 2]
    assert lost and all(c["placement"]["attempts"][0]["node_id"] == out["retried"]["killed"]
                        and c["placement"]["attempts"][-1]["node_id"] != out["retried"]["killed"] for c in lost), \
        [c["placement"]["attempts"] for c in cands]
    assert 1 in {len(c["placement"]["attempts"]) for c in cands}
    shards = json.loads((tmp_path / "retried/generations/gen_00/worker/attempt_0/shards.json").read_text())
    assert len(shards) == 2 and all(s["error"] is None for s in shards)
    for i in range(2):  # each shard's job, result and log came back to the driver's run directory
        for name in ("job.json", "result.json", "worker.log"):
            assert (tmp_path / f"retried/generations/gen_00/worker/attempt_0/shard_{i}/{name}").is_file()

    # 2. no retries: the lost shard's candidates failed with the reason, the others trained, the run completed
    assert out["failed"]["status"] == "complete"
    cands = _records(tmp_path / "failed", gen=0)
    failed = [c for c in cands if c["status"] == "failed"]
    trained = [c for c in cands if c["status"] == "trained"]
    assert failed and trained and len(failed) + len(trained) == len(cands)
    assert all("lost after 1 attempt" in c["note"] and "max_retries=0" in c["note"] for c in failed)
    assert all(c["placement"]["node_id"] == out["failed"]["killed"] for c in failed)

    # 3. resumed: generation 0's records are kept, generation 1 trained on the remaining node
    assert out["resumed"]["status"] == "complete"
    assert [c["id"] for c in _records(tmp_path / "failed", gen=0)] == [c["id"] for c in cands]
    gen1 = _records(tmp_path / "failed", gen=1)
    assert gen1 and any(c["status"] == "trained" for c in gen1)
    summary = json.loads((tmp_path / "failed/summary.json").read_text())
    assert len(summary["per_generation_best"]) == 2 and summary["sessions"] == 2


@needs_netns
def test_a_local_cluster_is_started_keyless_and_stopped(tmp_path):
    """executor=ray with no address starts its own one-node cluster from the scrubbed environment:
    an API key in the driver's environment reaches neither Ray's processes nor the training worker."""
    proc = _in_netns(sys.executable, str(HERE / "ray_cluster.py"), "local", str(tmp_path), timeout=600,
                     home=tmp_path / "home")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    # the training worker's own report, and the Ray worker process that ran the shard, read from outside
    assert "OPENAI_API_KEY" not in out["worker_env"] and "PATH" in out["worker_env"]
    assert "OPENAI_API_KEY" not in out["ray_worker_env"] and "PATH" in out["ray_worker_env"]
    assert any(n.startswith("RAY_") for n in out["ray_worker_env"])  # the names did come from a Ray worker process
    assert len(out["shards"]) == 1 and out["shards"][0]["node_ip"] == "127.0.0.1"
    assert all(f is not None and f > 0 for fs in out["fitness"].values() for f in fs)
    assert out["cluster_alive_after"] is False


@needs_netns
def test_a_multirun_over_two_tasks_through_the_ray_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _in_netns(sys.executable, "-m", "rewardsmith.cli.main", "-m", "task=cartpole,pendulum",
                     "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2",
                     "hydra.launcher.ray.remote.num_cpus=1", f"hydra.sweep.dir={sweep}",
                     "iterations=1", "samples=2", "seeds=1", "final_eval=false", "baselines=false",
                     "train.total_timesteps=8192", "live=false", "compile_cache=false", timeout=900,
                     home=tmp_path / "home")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 2, list(sweep.rglob("*"))[:20]
    tasks = {json.loads(p.read_text())["task"]: json.loads(p.read_text())["status"] for p in summaries}
    assert tasks == {"cartpole": "complete", "pendulum": "complete"}
    assert len({p.parent for p in summaries}) == 2  # each job its own run directory


def _records(run_dir: Path, gen: int = 0) -> list[dict]:
    gdir = run_dir / "generations" / f"gen_{gen:02d}"
    recs = [json.loads(p.read_text()) for p in sorted(gdir.glob("candidates/*/candidate.json"))]
    recs += [json.loads(p.read_text()) for p in sorted((run_dir / "baselines").glob("*/candidate.json"))] if gen == 0 else []
    return recs


def test_the_live_view_shows_shard_and_node():
    import io

    from rich.console import Console

    from rewardsmith.cli.display import Display
    from rewardsmith.records import Candidate

    d = Display(live=False, stream=io.StringIO())
    d.start(task="cartpole", proposer="offline", run_dir="x")
    here = Candidate(id="g00-local", generation=0, source="", origin="offline", status="trained", fitness=1.0)
    d.candidates([here])
    con = Console(file=io.StringIO(), width=160)
    con.print(d._render())
    assert "shard · node" not in con.file.getvalue()  # not on this machine
    moved = Candidate(id="g00-moved", generation=0, source="", origin="offline", status="trained", fitness=1.0,
                      placement={"shard": 1, "node_ip": "127.0.0.1", "node_id": "abcdef123456",
                                 "attempts": [{}, {}]})
    d.candidates([here, moved])
    con = Console(file=io.StringIO(), width=160)
    con.print(d._render())
    text = con.file.getvalue()
    assert "shard · node" in text and "1 · 127.0.0.1 abcdef12 (2 attempts)" in text


@pytest.mark.parametrize("launcher, target, setting", [
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task: 8"),
    ("ray_local", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "num_cpus: 2"),
])
def test_the_launcher_presets_compose_over_the_plugins(launcher, target, setting):
    proc = subprocess.run([sys.executable, "-m", "rewardsmith.cli.main", f"hydra/launcher={launcher}", "--cfg", "hydra",
                           "-p", "hydra.launcher"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"_target_: {target}" in proc.stdout and setting in proc.stdout
