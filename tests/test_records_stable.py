"""A redesign step changes no record: a tiny CartPole run's summary, generation and candidate records
and the worker's job and result files equal, in content, those the code wrote before the step
(tests/fixtures/records_cartpole_tiny.json, written by the code before TrainJob/TrainResult and
validate.admit; same seeds). Seconds, the machine's sandbox figures and the compilation cache's
path are left out: they are not the run's content.

To write the fixture again after a change that is meant to change records:
    python tests/test_records_stable.py RUN_DIR > tests/fixtures/records_cartpole_tiny.json
where RUN_DIR holds ``run(stable_cfg(), RUN_DIR)``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_cfg  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "records_cartpole_tiny.json"
MACHINE = {"sandbox", "compile_cache_dir", "timing"}  # what depends on the machine or the clock
LARGE = {"rollout", "trajectories"}  # the viewer's episode and the sampled evaluation episodes (their files are left out too)


def stable_cfg() -> dict:
    return tiny_cfg(seeds=2, iterations=2, samples=3)


def _strip(x):
    if isinstance(x, dict):  # a task file's absolute path depends on where the repository is
        return {k: _strip(v) for k, v in x.items()
                if k not in MACHINE | LARGE and not k.endswith("_s") and k != "wall_time_s"
                and not (k == "file" and isinstance(v, str) and v.startswith("/"))}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def records(run_dir: Path) -> dict:
    """Every JSON record of the run that is its content (not the live logs, not rollouts)."""
    out = {}
    for p in sorted(Path(run_dir).rglob("*.json")):
        rel = p.relative_to(run_dir).as_posix()
        if rel.startswith("worker/") or p.name == "rollout.json":
            continue
        out[rel] = _strip(json.loads(p.read_text(encoding="utf-8")))
    return out


def test_a_run_writes_the_records_it_wrote_before_the_step(tmp_path, monkeypatch):
    from rewardsmith.evolve.loop import run

    monkeypatch.setenv("REWARDSMITH_CPU_DEVICES", "2")  # the members split over devices as when it was written
    run(stable_cfg(), tmp_path)
    got, want = records(tmp_path), json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(want), set(got) ^ set(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs from the record written before the step"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        pytest.exit(__doc__)
    print(json.dumps(records(Path(sys.argv[1])), indent=1, sort_keys=True))
