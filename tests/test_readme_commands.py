"""Every command in the README's code blocks, exactly as typed.

Commands on classic-control (gymnax) environments run for real, as subprocesses, with small budgets
put in place of the run's own (the README's settings are replaced, never silently kept): the
``rewardsmith-*`` commands run against the run directory the first one wrote. Commands whose run
needs Brax physics, a GPU, an LLM server, a cluster or a person are composed with hydra and checked
the way a run checks its settings before any work (task, training preset, executor, LLM settings).
A README command that fails is a failing test; a new kind of command must be classified here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {"iterations": "1", "samples": "2", "seeds": "2", "train.total_timesteps": "2048", "train.num_envs": "4",
        "train.num_steps": "16", "train.num_minibatches": "2", "train.update_epochs": "1",
        "train.num_eval_envs": "4", "final_eval": "false", "live": "false"}


def readme_commands(text: str) -> list[str]:
    """Each ``rewardsmith...`` command of the README's shell code blocks, continuation lines joined."""
    cmds, lang, buf = [], None, []
    for line in text.splitlines():
        if line.strip().startswith("```"):
            if lang is None:
                lang = line.strip()[3:].strip() or "text"
                continue
            if lang in ("bash", "sh", "console", "text"):
                joined, i = [], 0
                while i < len(buf):
                    cur = buf[i]
                    while cur.rstrip().endswith("\\") and i + 1 < len(buf):
                        i += 1
                        cur = cur.rstrip()[:-1].rstrip() + " " + buf[i].strip()
                    joined.append(cur.strip())
                    i += 1
                cmds += [c for c in joined if re.match(r"^([A-Z_]+=\S+\s+)*rewardsmith(-\w+)?(\s|$)", c)]
            lang, buf = None, []
            continue
        if lang is not None:
            buf.append(line)
    return cmds


def split(cmd: str) -> tuple[dict, str, list[str]]:
    """(environment assignments, program, arguments) of one command, as the shell would split it."""
    words = shlex.split(cmd, comments=True)
    env = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        k, _, v = words.pop(0).partition("=")
        env[k] = v.replace("$PWD", str(ROOT))
    return env, words[0], [w for w in words[1:] if not (w.startswith("[") and w.endswith("]"))]  # [optional]


COMMANDS = readme_commands((ROOT / "README.md").read_text())
MAIN = [c for c in COMMANDS if split(c)[1] == "rewardsmith"]
OTHERS = [c for c in COMMANDS if split(c)[1] != "rewardsmith"]


def _brax_or_remote(args: list[str]) -> str:
    """Why a ``rewardsmith`` command is composed rather than run here ('' to run it)."""
    joined = " ".join(args)
    if args and args[0] == "-m":
        return "a sweep through a launcher"
    for word, why in (("llm=", "an LLM server"), ("executor=ray", "a Ray cluster"), ("train=gpu", "a GPU budget"),
                      ("feedback=web", "a person at the feedback page"), ("brax:", "Brax physics")):
        if word in joined:
            return why
    task = next((a.split("=", 1)[1] for a in args if a.startswith("task=")), "cartpole")
    if task not in ("cartpole", "pendulum", "mountain_car_continuous", "own"):
        return "Brax physics"
    return ""


def _with_tiny_budget(args: list[str]) -> list[str]:
    keep = [a for a in args if a.split("=", 1)[0].lstrip("+") not in TINY]
    return keep + [f"{k}={v}" for k, v in TINY.items()]


def _run(program: str, args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600):
    full_env = {**os.environ, "CI": "true", **(env or {})}
    return subprocess.run([str(BIN / program), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_the_readme_has_the_commands_this_file_classifies():
    assert len(MAIN) >= 15 and len(OTHERS) >= 5
    for c in OTHERS:
        assert split(c)[1] in ("rewardsmith-feedback", "rewardsmith-resume", "rewardsmith-export",
                               "rewardsmith-import", "rewardsmith-report"), c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "tests").symlink_to(ROOT / "tests")  # the README's paths under tests/ as from the repository root
    return d


RUN = [c for c in MAIN if not _brax_or_remote(split(c)[2])]
COMPOSE = [c for c in MAIN if _brax_or_remote(split(c)[2])]


@pytest.mark.parametrize("cmd", RUN)
def test_readme_command_runs(cmd, workdir):
    env, program, args = split(cmd)
    proc = _run(program, _with_tiny_budget(args), workdir, env)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "best candidate:" in proc.stdout and "every trained policy behaved the same" not in proc.stdout


@pytest.fixture(scope="module")
def imported(workdir):
    """The README's rewardsmith-import lines, run first: a later command seeds a run with their output."""
    for cmd in OTHERS:
        env, program, args = split(cmd)
        if program == "rewardsmith-import":
            proc = _run(program, args, workdir, env)
            assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-3000:]}"
    return workdir


@pytest.mark.parametrize("cmd", COMPOSE)
def test_readme_command_composes_and_its_settings_check(cmd, imported, monkeypatch):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from rewardsmith.cli.main import normalize_overrides
    from rewardsmith.evolve.settings import RunSettings
    from rewardsmith.propose.llm_client import LLMSettings

    monkeypatch.chdir(imported)
    _, _, args = split(cmd)
    multirun = args and args[0] == "-m"
    overrides = normalize_overrides(args[1:] if multirun else args)
    sweeps = [overrides]
    for i, o in enumerate(overrides):  # a sweep: every value of a comma list, one composition each
        key, _, value = o.partition("=")
        if multirun and "," in value and not key.startswith("hydra"):
            sweeps = [overrides[:i] + [f"{key}={v}"] + overrides[i + 1:] for v in value.split(",")]
    with initialize_config_module(config_module="rewardsmith.conf", version_base="1.3"):
        for ov in sweeps:
            cfg = compose(config_name="config", overrides=ov, return_hydra_config=multirun)
            if multirun:  # the launcher the sweep names is there, with its settings
                launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
                assert "_target_" in launcher, cmd
                with open_dict(cfg):
                    del cfg["hydra"]
            plain = RunSettings.from_cfg(cfg).cfg
            if plain.get("llm", {}).get("provider") not in (None, "offline"):
                LLMSettings.from_cfg(plain["llm"])  # the settings; the server itself is not there to call


def test_the_other_readme_commands_run_on_a_real_run_directory(workdir):
    """rewardsmith-report/-export/-resume/-feedback (file mode) and -import, as typed, against the
    run directory of a first tiny CartPole run (the README's outputs/cartpole/<timestamp>)."""
    proc = _run("rewardsmith", _with_tiny_budget(["task=cartpole"]), workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next((workdir / "outputs" / "cartpole").iterdir())
    (workdir / "feedback.yaml").write_text("overall: keep the cart near the centre\n")
    interactive = []
    for cmd in OTHERS:
        env, program, args = split(cmd)
        args = [a.replace("outputs/cartpole/<timestamp>", str(run_dir)) for a in args]
        if program == "rewardsmith-feedback" and not any(a == "mode=file" for a in args):
            interactive.append(cmd)  # a web page or a terminal session waiting for a person
            continue
        proc = _run(program, args, workdir, env)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert len(interactive) == 2
    assert (workdir / "my_reward.py").is_file() and (workdir / "ant_reward.py").is_file()
    assert len(list((run_dir / "generations").glob("gen_*"))) >= 3  # resumed for 2 more generations


def test_a_readme_command_with_a_bad_override_fails_in_one_line(workdir):
    proc = _run("rewardsmith", ["task=own", "task.env=gymnax:Pendulum-v1", "task.fitness.expresion=1"], workdir)
    assert proc.returncode != 0 and "expresion" in proc.stderr
