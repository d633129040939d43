"""Run inside a network namespace of its own by tests/test_cluster.py (``unshare -rn``, loopback up):
real Ray clusters whose nodes are separate processes on 127.0.0.1, and rewardsmith runs on them.

    python tests/ray_cluster.py faults OUT_DIR   head + two worker nodes; a worker node is killed
                                                  mid-generation (retried), then again with no retries
                                                  left (its shard fails), then the run is resumed
    python tests/ray_cluster.py local OUT_DIR     executor=ray starting its own local cluster, with an
                                                  API key in the driver's environment

Writes OUT_DIR/out.json with what the test asserts on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# fast node-death detection for the test cluster (Ray's default takes about 15-30 s)
FAST = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
        "RAY_health_check_initial_delay_ms": "500", "RAY_USAGE_STATS_ENABLED": "0"}
CFG = {"task": {"name": "cartpole"}, "iterations": 1, "samples": 4, "seeds": 2, "final_eval": False, "live": False,
       "train": {"total_timesteps": 20000}, "compile_cache": False}


def start_node(log: Path, *args: str, timeout: float = 120) -> subprocess.Popen:
    """``ray start --block`` in a session of its own (killing its group is losing the node); returns
    once the node is up (nodes are started one at a time: concurrent starts time out)."""
    proc = subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **FAST}, start_new_session=True)
    t0 = time.time()
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() - t0 > timeout:
            raise RuntimeError(f"ray node did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    return proc


def wait_nodes(ray, n: int, timeout: float = 90) -> None:
    t0 = time.time()
    while sum(1 for x in ray.nodes() if x["Alive"]) < n:
        if time.time() - t0 > timeout:
            raise RuntimeError(f"only {[x['Alive'] for x in ray.nodes()]} nodes after {timeout} s")
        time.sleep(0.5)


def node_of(ray, resource: str) -> str:
    return next(x["NodeID"] for x in ray.nodes() if x["Alive"] and resource in x["Resources"])


class KillingDisplay:
    """Kills the node of the first shard whose training starts (mid-generation)."""

    def __init__(self, procs: dict[str, subprocess.Popen]):
        self.procs, self.killed, self.messages = procs, None, []

    def message(self, text: str) -> None:
        self.messages.append(text)
        if self.killed is None and text.startswith("training ") and "(shard " in text:
            short = text.rsplit(" ", 1)[-1].rstrip(")")
            for node_id, proc in self.procs.items():
                if node_id.startswith(short):
                    os.killpg(proc.pid, signal.SIGKILL)
                    self.killed = node_id

    def __getattr__(self, name):
        return lambda *a, **k: None


def faults(out: Path) -> dict:
    import ray

    from rewardsmith.evolve.loop import resume, run

    head = start_node(out / "head.log", "--head", "--port=6390", "--num-cpus=0", "--include-dashboard=false",
                      f"--temp-dir={tempfile.mkdtemp(prefix='rs-ray-')}")  # short: socket paths
    started: dict[str, subprocess.Popen] = {}
    try:
        workers = []
        for i in (1, 2, 3):
            workers.append(lambda i=i: start_node(
                out / f"w{i}.log", "--address=127.0.0.1:6390", "--num-cpus=1", f"--resources={{\"w{i}\": 1}}",
                f"--dashboard-agent-listen-port={52400 + i}", f"--metrics-export-port={52500 + i}",
                f"--runtime-env-agent-port={52600 + i}", f"--dashboard-agent-grpc-port={52700 + i}"))
        started = {"w1": workers[0](), "w2": workers[1]()}
        ray.init(address="127.0.0.1:6390", logging_level="ERROR", log_to_driver=False)
        wait_nodes(ray, 3)
        procs = {node_of(ray, name): p for name, p in started.items()}
        result = {"workers": sorted(procs)}

        # 1. a worker node lost mid-generation: its shard is retried on the other node
        disp = KillingDisplay(procs)
        s1 = run({**CFG, "executor": {"name": "ray", "address": "127.0.0.1:6390", "max_retries": 2}},
                 out / "retried", display=disp)
        result["retried"] = {"status": s1["status"], "killed": disp.killed, "messages": disp.messages}

        # 2. no retries left: the lost shard's candidates fail with the reason, the rest train
        started["w3"] = workers[2]()
        wait_nodes(ray, 3)
        procs = {node_of(ray, n): p for n, p in started.items() if p.poll() is None}
        disp2 = KillingDisplay(procs)
        s2 = run({**CFG, "executor": {"name": "ray", "address": "127.0.0.1:6390", "max_retries": 0}},
                 out / "failed", display=disp2)
        result["failed"] = {"status": s2["status"], "killed": disp2.killed, "messages": disp2.messages}

        # 3. that run resumed on what is left of the cluster: one more generation
        s3 = resume(out / "failed", iterations=1)
        result["resumed"] = {"status": s3["status"]}
        return result
    finally:
        ray.shutdown()
        for p in [head, *started.values()]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=60)


def local(out: Path) -> dict:
    """executor=ray with no address: the run starts (and stops) its own cluster, keyless."""
    os.environ["OPENAI_API_KEY"] = "sk-rewardsmith-test-secret"
    from rewardsmith.tasks import get_task
    from rewardsmith.train.cluster import RayExecutor, RaySettings
    from rewardsmith.train.job import TrainJob
    from rewardsmith.isolation.sandbox import Policy

    task = get_task("cartpole")
    job = {"task": {"name": "cartpole", "file": None, "env": {}}, "ppo": _ppo(task), "schema": task.schema.to_json(), "max_components": 8, "seeds": [0, 1],
           "candidates": [{"id": "human", "source": task.human_reward}, {"id": "sparse", "source": task.sparse_reward}],
           "compile_cache_dir": None}
    job = TrainJob.from_json(job)
    ex = RayExecutor(RaySettings(address=None, local_cpus=2), out / "worker", Policy(mode="auto"))
    with ex:
        result = ex.run(job, out / "job", timeout_s=600)
        cluster_pid = ex.cluster.proc.pid
        ray_pid = result.shards[0]["attempts"][-1]["pid"]  # the Ray worker process that ran the shard
        ray_env = sorted({kv.split(b"=", 1)[0].decode() for kv in Path(f"/proc/{ray_pid}/environ").read_bytes().split(b"\0") if kv})
    return {"worker_env": ex.sandbox["environment"], "ray_worker_env": ray_env, "shards": result.shards,
            "fitness": {cid: [m.fitness for m in r.members] for cid, r in result.candidates.items()},
            "cluster_alive_after": _alive(cluster_pid)}


def _ppo(task) -> dict:
    import dataclasses

    from rewardsmith.evolve.settings import ppo_config

    return dataclasses.asdict(ppo_config(task, {"train": {"total_timesteps": 10000}}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    res = {"faults": faults, "local": local}[mode](out)
    (out / "out.json").write_text(json.dumps(res, indent=1))
