import dataclasses

import pytest

from rewardsmith.tasks import get_task
from rewardsmith.isolation.child import scrubbed_env as worker_env
from rewardsmith.train.job import TaskRef, TrainJob
from rewardsmith.train.runner import WorkerError, run_worker

from conftest import TINY_TRAIN

SECRETS = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "HF_TOKEN": "x", "MY_SERVICE_PASSWORD": "x", "GITHUB_TOKEN": "x", "JAX_AUTH_TOKEN": "x",
           "AZURE_API_KEY": "x", "GEMINI_API_KEY": "x"}


def test_worker_env_holds_no_credentials():
    env = worker_env({**SECRETS, "PATH": "/usr/bin", "HOME": "/root", "XLA_FLAGS": "--x", "RANDOM_VAR": "1"})
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "XLA_FLAGS": "--x"}


def _job(task, candidates, **over):
    job = {"task": {"name": task.name, "file": None}, "ppo": {**task.ppo, **TINY_TRAIN}, "seeds": [0],
           "candidates": candidates, "check_seed": 0}
    job.update(over)
    return TrainJob.from_json(job)


def test_worker_process_never_sees_api_keys(tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    task = get_task("cartpole")
    events = []
    result = run_worker(_job(task, [{"id": "h", "source": task.human_reward}]),
                        tmp_path, timeout_s=300, on_event=events.append)
    names = set(next(e for e in events if e["event"] == "sandbox")["environment"])  # the worker's own report
    assert "PATH" in names
    assert not names & set(SECRETS), names & set(SECRETS)
    assert not [n for n in names if "KEY" in n or "TOKEN" in n or "SECRET" in n]
    assert result.candidates["h"].validation.ok
    assert result.candidates["h"].members[0].ok
    assert any(e["event"] == "trained" for e in events)


def test_worker_crash_is_one_clear_error(tmp_path):
    task = get_task("cartpole")
    job = dataclasses.replace(_job(task, [{"id": "h", "source": task.human_reward}]), task=TaskRef("no_such_task"))
    with pytest.raises(WorkerError) as e:
        run_worker(job, tmp_path, timeout_s=300)
    msg = str(e.value)
    assert "exited with code" in msg and "unknown task 'no_such_task'" in msg and "\n" not in msg


def test_hung_worker_is_stopped_at_timeout(tmp_path):
    task = get_task("cartpole")
    with pytest.raises(WorkerError, match="exceeded its 0.5 s timeout"):
        run_worker(_job(task, [{"id": "h", "source": task.human_reward}]), tmp_path, timeout_s=0.5)


def test_second_run_hits_the_persistent_compilation_cache(tmp_path):
    """The trainer does not depend on candidate code: a second worker with the same task and settings
    loads it from JAX's persistent cache, even with different rewards."""
    task = get_task("cartpole")
    cache = tmp_path / "jax-cache"
    other = task.human_reward.replace("def compute_reward", "SCALE = 2.0\n\n\ndef compute_reward")
    timings, entries = [], []
    for i, src in enumerate((task.human_reward, other)):
        job = _job(task, [{"id": f"c{i}", "source": src}], compile_cache_dir=str(cache))
        result = run_worker(job, tmp_path / f"w{i}", timeout_s=600)
        assert result.candidates[f"c{i}"].members[0].ok
        timings.append(result.timing)
        entries.append(len(list(cache.iterdir())))
    assert entries[0] > 0
    assert entries[1] - entries[0] <= 3  # only the new reward programs were added
    trainer = [t["compile_s"] - t["reward_compile_s"] for t in timings]
    assert trainer[1] < 0.6 * trainer[0], trainer
