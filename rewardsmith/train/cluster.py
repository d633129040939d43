"""Where a generation trains: this machine's warm worker (``executor=local``) or a Ray cluster
(``executor=ray``).

On Ray a generation's candidates are split into shards sized to the cluster (one per node's GPUs
where there are GPUs, else one per node's CPUs); each shard is a Ray task that runs the same keyless
training worker as the local executor (``runner.run_worker``: scrubbed environment, sandbox, own
session) on a node-local folder, and returns its result, log and placement. The driver keeps the run
directory: it writes each shard's job, result and log beneath the attempt's worker folder and merges
the shards' results into the one result the loop records. A node lost mid-generation is Ray's
business: the shard is retried elsewhere (``max_retries``, Ray's own task retries); after the last
retry its candidates fail with the reason and the rest of the generation is kept.

A local cluster (``executor.address`` null) is started as its own process with the worker's scrubbed
environment, bound to 127.0.0.1, and stopped with the run, so no API key reaches Ray's processes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from rewardsmith.errors import UserError
from rewardsmith.rundir import WorkerFiles, atomic_write_json
from rewardsmith.isolation.child import scrubbed_env
from rewardsmith.isolation.sandbox import Policy, writable_dirs
from rewardsmith.train.job import TrainJob, TrainResult
from rewardsmith.train.runner import StallLimits, WarmWorker, WorkerError, observer, run_isolating_stalls, run_worker

EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class RaySettings:
    """``executor=ray``: where the cluster is and how a generation is split over it."""

    address: str | None = None  # None: start a local cluster for the run; "auto"; or "host:port"
    address_from_env: bool = False  # the address is RAY_ADDRESS's (executor.address unset)
    shards: int | None = None  # None: one per node (per node's GPUs where there are GPUs)
    num_cpus: int | None = None  # CPUs per shard; None: the smallest node's
    num_gpus: int | None = None  # GPUs per shard; None: the smallest GPU node's, 0 without GPUs
    max_retries: int = 2  # Ray retries of a shard whose node or process was lost
    connect_timeout_s: float = 60.0
    local_cpus: int | None = None  # a local cluster's CPUs; None: this machine's

    @classmethod
    def from_cfg(cls, ex: Mapping[str, Any]) -> "RaySettings":
        known = {f.name for f in dataclasses.fields(cls)} - {"address_from_env"} | {"name"}
        extra = sorted(set(ex) - known)
        if extra:
            raise UserError(f"executor=ray has no setting {extra[0]!r} (settings: {', '.join(sorted(known - {'name'}))})")
        out = {}
        for key in ("shards", "num_cpus", "local_cpus"):
            out[key] = _opt_int(ex, key, minimum=1)
        out["num_gpus"] = _opt_int(ex, "num_gpus", minimum=0)
        retries = ex.get("max_retries", 2)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UserError(f"executor.max_retries must be a non-negative integer, got {retries!r}")
        timeout = ex.get("connect_timeout_s", 60.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise UserError(f"executor.connect_timeout_s must be a positive number, got {timeout!r}")
        address = ex.get("address")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise UserError(f"executor.address must be null (start a local cluster), auto or host:port, got {address!r}")
        from_env = address is None and bool(os.environ.get("RAY_ADDRESS", "").strip())
        if from_env:  # Ray's own convention: ray.init() connects to RAY_ADDRESS
            address = os.environ["RAY_ADDRESS"].strip()
        return cls(address=address, address_from_env=from_env, max_retries=retries,
                   connect_timeout_s=float(timeout), **out)


def _opt_int(ex: Mapping[str, Any], key: str, minimum: int) -> int | None:
    v = ex.get(key)
    if v in (None, "auto"):
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise UserError(f"executor.{key} must be auto or an integer >= {minimum}, got {v!r}")
    return v


def executor_settings(cfg: Mapping[str, Any]) -> RaySettings | None:
    """None for ``executor=local`` (the default), the Ray settings for ``executor=ray``."""
    ex = cfg.get("executor") or {"name": "local"}
    if isinstance(ex, str):
        ex = {"name": ex}
    if not isinstance(ex, Mapping):
        raise UserError(f"executor must be local or ray, got {ex!r}")
    name = ex.get("name", "local")
    if name not in EXECUTORS:
        raise UserError(f"executor must be local or ray, got {name!r}")
    if name == "local":
        return None
    settings = RaySettings.from_cfg(ex)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("executor=ray needs Ray: pip install 'rewardsmith[cluster]'") from None
    return settings


def make_executor(ray_settings: RaySettings | None, log_dir: Path, policy: Policy, display=None):
    """The run's executor: a ``WarmWorker`` (local: ``ray_settings`` None) or a ``RayExecutor``."""
    if ray_settings is None:
        return WarmWorker(log_dir, policy)
    if ray_settings.address_from_env and display is not None:
        display.message(f"executor=ray: connecting to the cluster at RAY_ADDRESS={ray_settings.address} "
                        "(executor.address is unset)")
    return RayExecutor(ray_settings, log_dir, policy, display)


# -- splitting and merging --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShardPlan:
    count: int
    num_cpus: int
    num_gpus: int


def plan_shards(nodes: list[dict], settings: RaySettings) -> ShardPlan:
    """Shards sized to the cluster's alive nodes (``ray.nodes()`` records): one per node's GPUs where
    there are GPU nodes, else one per node's CPUs, at the smallest node's size so a shard retried
    after a node loss fits on any other node."""
    alive = [n for n in nodes if n.get("Alive", n.get("alive", True))]
    res = [n.get("Resources") or {} for n in alive]
    gpu_nodes = [r for r in res if r.get("GPU", 0) >= 1]
    cpu_nodes = [r for r in res if r.get("CPU", 0) >= 1]
    if not cpu_nodes:
        raise UserError("the Ray cluster has no node with a CPU to run training on")
    if gpu_nodes and settings.num_gpus != 0:
        gpus = settings.num_gpus or int(min(r["GPU"] for r in gpu_nodes))
        cpus = settings.num_cpus or 1
        fits = sum(int(r["GPU"] // gpus) for r in gpu_nodes if r.get("CPU", 0) >= cpus)
    else:
        gpus = 0
        cpus = settings.num_cpus or int(min(r["CPU"] for r in cpu_nodes))
        fits = sum(int(r["CPU"] // cpus) for r in cpu_nodes)
    if fits < 1:
        raise UserError(f"no node of the Ray cluster has {cpus} CPU(s)" + (f" and {gpus} GPU(s)" if gpus else "")
                        + " for a shard; lower executor.num_cpus/num_gpus")
    return ShardPlan(count=settings.shards or fits, num_cpus=cpus, num_gpus=gpus)


def split_job(job: TrainJob, n_shards: int) -> list[TrainJob]:
    """The generation's job as up to ``n_shards`` jobs, candidates dealt out in order into nearly
    equal groups (every seed of a candidate stays in its shard, so its fitness is one shard's). A
    shard pads to its share of the run's usual generation size, so later generations reuse its
    compiled trainer as on one machine."""
    cands = list(job.candidates)
    n = max(1, min(n_shards, len(cands)))
    size, extra = divmod(len(cands), n)
    groups, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        groups.append(cands[start:stop])
        start = stop
    pop = job.population_size
    n_seeds = max(1, len(job.seeds or (1,)))
    shard_pop = math.ceil(pop / n_seeds / n) * n_seeds if pop else None
    return [job.with_candidates(g, shard_pop) for g in groups]


@dataclasses.dataclass
class ShardOutcome:
    """What a shard's Ray task returns: the worker's result or its one-line failure, and where it ran."""

    node_id: str | None = None
    node_ip: str | None = None
    result: TrainResult | None = None
    error: str | None = None
    log: str = ""
    wall_s: float | None = None
    attempts: list[dict] = dataclasses.field(default_factory=list)


def merge_results(shard_jobs: list[TrainJob], outcomes: list[ShardOutcome], wall_s: float) -> TrainResult:
    """One result from the shards' outcomes: every candidate of a failed shard is listed under
    ``failed`` with the reason."""
    merged = TrainResult()
    for i, (job, out) in enumerate(zip(shard_jobs, outcomes)):
        place = {"executor": "ray", "shard": i, "shards": len(shard_jobs), "node_id": out.node_id,
                 "node_ip": out.node_ip, "attempts": out.attempts}
        merged.shards.append({**place, "candidates": job.ids, "wall_s": out.wall_s, "error": out.error})
        for cid in job.ids:
            merged.placement[cid] = place
        if out.error or out.result is None:
            for cid in job.ids:
                merged.failed[cid] = out.error or "the shard returned no result"
            continue
        res = out.result
        merged.candidates.update(res.candidates)
        for k, v in res.timing.items():  # the slowest shard's seconds
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                merged.timing[k] = max(float(v), merged.timing.get(k, 0.0))
            else:
                merged.timing.setdefault(k, v)
    merged.timing["total_s"] = wall_s
    return merged


# -- the shard, on a node ---------------------------------------------------------------------------
def _set_parent_death_signal() -> None:
    """The training worker dies with the Ray process that started it (a lost node leaves no orphan)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_shard(job: TrainJob, shard: int, policy: Policy, timeout_s: float, events=None,
              stalls: StallLimits | None = None) -> ShardOutcome:
    """Body of a shard's Ray task: the keyless worker on a node-local folder; returns its result (or
    the worker's one-line failure), its log and where it ran. A candidate whose rollout check stalls
    or its training is refused there and the shard's others train (``runner.run_isolating_stalls``)."""
    import ray

    ctx = ray.get_runtime_context()
    node_id, node_ip = ctx.get_node_id(), ray.util.get_node_ip_address()
    t0 = time.monotonic()

    def send(ev: dict) -> None:
        if events is not None:
            try:
                events.put_nowait({**ev, "shard": shard, "node_id": node_id, "node_ip": node_ip})
            except Exception:  # noqa: BLE001 - the live view never stops training
                pass

    send({"event": "shard_started", "pid": os.getpid()})
    folder = Path(tempfile.mkdtemp(prefix=f"rewardsmith-shard{shard}-"))
    # the worker writes beneath this node's shard folder and this node's compilation cache only
    policy = dataclasses.replace(policy, write=writable_dirs(folder, job.compile_cache_dir))
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    extra = {}
    if cpus:  # the shard's CPUs are its devices, whatever device count the node was started with
        extra["REWARDSMITH_CPU_DEVICES"] = str(max(1, int(cpus)))
        extra["XLA_FLAGS"] = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                      if not f.startswith("--xla_force_host_platform_device_count"))
    out = ShardOutcome(node_id=node_id, node_ip=node_ip)
    try:
        out.result = run_isolating_stalls(
            lambda one: run_worker(one, folder, timeout_s=timeout_s, on_event=send, policy=policy, extra_env=extra,
                                   preexec_fn=_set_parent_death_signal, stalls=stalls), job)
    except WorkerError as e:
        out.error = str(e)
    try:
        out.log = WorkerFiles(folder).log.read_text(encoding="utf-8", errors="replace")[-200_000:]
    except OSError:
        out.log = ""
    out.wall_s = time.monotonic() - t0
    shutil.rmtree(folder, ignore_errors=True)
    return out


# -- the driver -------------------------------------------------------------------------------------
def _use_token(auth_env: dict[str, str]) -> dict[str, str | None]:
    """Ray's authentication settings for this process (set in the environment and re-read, as Ray
    itself does when it enables token authentication); returns the values they replace."""
    before = {k: os.environ.get(k) for k in auth_env}
    os.environ.update(auth_env)
    _reload_ray_auth()
    return before


def _reload_ray_auth() -> None:
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without token authentication reads the environment
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A one-node Ray cluster for this run: ``ray start --head --block`` with the worker's scrubbed
    environment, on 127.0.0.1 and free ports, its files beneath ``folder``; stopped (its whole
    process group) when the run ends."""

    def __init__(self, folder: Path, cpus: int | None):
        self.folder = Path(folder)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's own session folder must be short (socket paths); the log goes to the run directory
        self.temp = Path(tempfile.mkdtemp(prefix="rs-ray-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        ray_bin = Path(sys.executable).with_name("ray")
        cmd = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", "--block",
               f"--port={self.port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
               "--disable-usage-stats", f"--temp-dir={self.temp}",
               f"--num-cpus={cpus or os.cpu_count() or 1}",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}"]
        # Ray's token authentication with a token of this cluster's own (the only credential its
        # processes hold); the training worker never gets it (the scrub drops *TOKEN*/*AUTH* names)
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        env = {**scrubbed_env(), **self.auth_env, "RAY_USAGE_STATS_ENABLED": "0"}
        self.log = open(self.folder / "ray-head.log", "w", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        """Until the head says it started (connecting earlier can leave ``ray.init`` waiting for good)."""
        log = self.folder / "ray-head.log"
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in log.read_text(encoding="utf-8", errors="replace"):
            if not self.alive():
                raise UserError(f"the local Ray cluster did not start (log: {log})")
            if time.monotonic() > deadline:
                self.stop()
                raise UserError(f"the local Ray cluster did not start within {timeout_s:g} s (log: {log})")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


class RayExecutor:
    """Runs each job as shards on a Ray cluster; same interface as ``WarmWorker`` (``run``,
    ``sandbox``, ``close``)."""

    def __init__(self, settings: RaySettings, log_dir: Path, policy: Policy, display=None):
        self.settings = settings
        self.log_dir = Path(log_dir)
        self.policy = policy
        self.display = display
        self.sandbox: dict | None = None
        self.cluster: LocalCluster | None = None
        self._connected = False
        self._owns_connection = False
        self._remote = None
        self._env_before: dict[str, str | None] = {}

    def connect(self) -> None:
        if self._connected:
            return
        import ray

        if not ray.is_initialized():
            address = self.settings.address
            if address is None:
                self.cluster = LocalCluster(self.log_dir, self.settings.local_cpus)
                self.cluster.wait_ready(self.settings.connect_timeout_s)
                address = self.cluster.address
                self._env_before = _use_token(self.cluster.auth_env)  # this driver authenticates with its token
            deadline = time.monotonic() + self.settings.connect_timeout_s
            while True:
                try:
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                             configure_logging=True)
                    break
                except (ConnectionError, RuntimeError, ValueError) as e:
                    if self.cluster is not None and not self.cluster.alive():
                        raise UserError(f"the local Ray cluster did not start (log: {self.log_dir / 'ray-head.log'})") from None
                    if time.monotonic() > deadline:
                        raise UserError(f"could not connect to the Ray cluster at {address}: {e}") from None
                    time.sleep(1.0)
            self._owns_connection = True
        self._connected = True
        self._remote = ray.remote(run_shard)

    def nodes(self) -> list[dict]:
        import ray

        return ray.nodes()

    def run(self, job: TrainJob, workdir: Path, *, timeout_s: float,
            on_event: Callable[[dict], None] | None = None, stalls: StallLimits | None = None) -> TrainResult:
        import ray
        from ray.util.queue import Queue
        self.connect()
        on_event = observer(on_event)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        record = WorkerFiles(workdir)
        atomic_write_json(record.job, job.to_json())
        plan = plan_shards(self.nodes(), self.settings)
        jobs = split_job(job, plan.count)
        events = Queue(actor_options=self._queue_placement())
        t0 = time.monotonic()
        refs = {}
        for i, sj in enumerate(jobs):
            opts = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus, "max_retries": self.settings.max_retries,
                    "retry_exceptions": False}
            refs[self._remote.options(**opts).remote(sj, i, self.policy, timeout_s, events, stalls)] = i
        attempts: list[list[dict]] = [[] for _ in jobs]
        outcomes: list[ShardOutcome | None] = [None] * len(jobs)
        progress: dict[int, tuple[int, int, dict]] = {}
        # each shard's worker has its own timeout; this bounds queueing and every retry too
        deadline = t0 + (timeout_s + 120.0) * (self.settings.max_retries + 1) * max(1, math.ceil(len(jobs) / plan.count))
        pending = dict(refs)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                self._drain(events, attempts, progress, on_event)
                for ref in done:
                    i = pending.pop(ref)
                    outcomes[i] = self._outcome(ref, i, attempts[i])
                if pending and time.monotonic() > deadline:
                    for ref, i in pending.items():
                        ray.cancel(ref, force=True)
                        outcomes[i] = ShardOutcome(error=f"shard {i} did not finish within {deadline - t0:.0f} s on "
                                                         "the Ray cluster (no node with room for it, or every attempt hung)")
                    pending = {}
            self._drain(events, attempts, progress, on_event)
        finally:
            try:
                ray.kill(events.actor)
            except Exception:  # noqa: BLE001
                pass
        done_outcomes: list[ShardOutcome] = []
        for i, out in enumerate(outcomes):
            assert out is not None
            out.attempts = attempts[i]
            if attempts[i] and not out.node_id:
                out.node_id, out.node_ip = attempts[i][-1]["node_id"], attempts[i][-1]["node_ip"]
            self._write_shard(record, i, jobs[i], out)
            done_outcomes.append(out)
        merged = merge_results(jobs, done_outcomes, time.monotonic() - t0)
        atomic_write_json(record.shards, merged.shards)
        atomic_write_json(record.result, merged.to_json())
        if all(o.error for o in done_outcomes):
            raise WorkerError("; ".join(sorted({o.error or "" for o in done_outcomes}))[:600])
        return merged

    def _queue_placement(self) -> dict:
        """The live events' queue lives on the head node (it goes only with the cluster itself),
        else beside the driver; it takes no CPU from training."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        head = [n["NodeID"] for n in self.nodes() if n.get("Alive") and "node:__internal_head__" in (n.get("Resources") or {})]
        here = head[0] if head else ray.get_runtime_context().get_node_id()
        return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=here, soft=True)}

    def _outcome(self, ref, i: int, tried: list[dict]) -> ShardOutcome:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # raised by the shard's own code
            return ShardOutcome(error=f"shard {i} failed: {type(e.cause).__name__}: {e.cause}"[:600])
        except ray.exceptions.RayError as e:  # the node or process was lost on the last attempt
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return ShardOutcome(error=f"shard {i} lost after {max(1, len(tried))} attempt(s) (executor.max_retries="
                                      f"{self.settings.max_retries}): {type(e).__name__}: {first}"[:600])

    def _drain(self, events, attempts, progress, on_event) -> None:
        while True:
            try:
                ev = events.get_nowait()
            except Exception:  # noqa: BLE001 - empty, or the queue's process is gone
                return
            i = int(ev.get("shard", 0))
            kind = ev.get("event")
            if kind == "shard_started":
                attempts[i].append({"node_id": ev["node_id"], "node_ip": ev["node_ip"], "pid": ev.get("pid")})
                if self.display is not None:
                    n = len(attempts[i])
                    self.display.message(f"shard {i} started on node {ev['node_ip']} {ev['node_id'][:8]}"
                                         + (f" (attempt {n})" if n > 1 else ""))
                continue
            if kind == "sandbox":
                self.sandbox = self.sandbox or {k: v for k, v in ev.items()
                                                if k not in ("event", "shard", "node_id", "node_ip")}
                continue
            if kind == "progress":
                progress[i] = (int(ev.get("updates", 0)), int(ev.get("of", 0)), dict(ev.get("fitness") or {}))
                fitness: dict = {}
                for _, _, f in progress.values():
                    fitness.update(f)
                ev = {**ev, "updates": min(p[0] for p in progress.values()),
                      "of": max(p[1] for p in progress.values()), "fitness": fitness}
            on_event(ev)

    @staticmethod
    def _write_shard(record: WorkerFiles, i: int, job: TrainJob, out: ShardOutcome) -> None:
        files = record.shard(i)
        files.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(files.job, job.to_json())
        files.log.write_text(out.log or "", encoding="utf-8")
        out.log = ""
        if out.result is not None:
            atomic_write_json(files.result, out.result.to_json())

    def close(self) -> None:
        if self._owns_connection:
            import ray

            ray.shutdown()
            self._owns_connection = False
        self._connected = False
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if self._env_before:
            for k, v in self._env_before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._env_before = {}
            _reload_ray_auth()

    def __enter__(self) -> "RayExecutor":
        self.connect()  # an unreachable cluster is a clear error before the first generation
        return self

    def __exit__(self, *exc) -> None:
        self.close()
