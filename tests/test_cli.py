import json
import os
import subprocess
import sys

from hydra import compose, initialize_config_module

from rewardsmith.evolve import run


def rewardsmith_cmd(*args, cwd, timeout=600):
    exe = os.path.join(os.path.dirname(sys.executable), "rewardsmith")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_packaged_config_composes_for_every_task():
    with initialize_config_module(config_module="rewardsmith.conf", version_base="1.3"):
        for task in ("cartpole", "pendulum", "mountain_car_continuous"):
            cfg = compose(config_name="config", overrides=[f"task={task}", "samples=4"])
            assert cfg.task.name == task and cfg.samples == 4 and cfg.llm.provider == "offline"
            assert cfg.train.total_timesteps is None  # task default applies


def test_composed_config_runs(tmp_path):
    with initialize_config_module(config_module="rewardsmith.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "iterations=1", "samples=2", "seeds=1", "train.total_timesteps=2048", "train.num_envs=4",
            "train.num_steps=16", "train.num_minibatches=2", "baselines=false"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "complete" and summary["human_baseline_fitness"] is None


def test_cli_unknown_task_is_one_line(tmp_path):
    r = rewardsmith_cmd("task.name=nope", cwd=tmp_path)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("rewardsmith: error: unknown task 'nope'; known tasks: ")
    assert {"cartpole", "pendulum", "mountain_car_continuous", "ant"} <= set(line.split(": ")[-1].split(", "))


def test_cli_bad_override_fails_before_work(tmp_path):
    r = rewardsmith_cmd("task=nope", cwd=tmp_path)
    assert r.returncode != 0 and "task" in r.stderr and "nope" in r.stderr
    r = rewardsmith_cmd("train.bogus=1", cwd=tmp_path)
    assert r.returncode != 0 and "bogus" in r.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("summary.json"))


def test_cli_runs_plain_logs_into_outputs(tmp_path):
    r = rewardsmith_cmd("iterations=1", "samples=2", "seeds=1", "train.total_timesteps=2048",
                        "train.num_envs=4", "train.num_steps=16", "train.num_minibatches=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "offline proposer" in r.stdout and "best candidate" in r.stdout
    (summary,) = list((tmp_path / "outputs" / "cartpole").glob("*/summary.json"))
    data = json.loads(summary.read_text())
    assert data["status"] == "complete" and (summary.parent / "best_reward.py").exists()
