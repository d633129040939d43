import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewardsmith.evolve import run
from rewardsmith.report import build_report

from conftest import tiny_cfg


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    summary = run(tiny_cfg(iterations=2, samples=2, eval_seeds=2, final_eval=True), root)
    return root, summary


def test_final_evaluation_and_hns(finished_run):
    root, summary = finished_run
    final = summary["final_evaluation"]
    assert len(final["eval_seeds"]) == 2 and not set(final["eval_seeds"]) & set(summary["seeds"])
    for k in ("best", "human", "sparse"):
        assert final[k]["fitness_mean"] is not None and final[k]["fitness_std"] is not None
        assert len(final[k]["per_seed"]) == 2
    b, h, s = (final[k]["fitness_mean"] for k in ("best", "human", "sparse"))
    if abs(h - s) > 1e-12:
        assert summary["human_normalised_score"] == pytest.approx((b - s) / abs(h - s))
    assert summary["hns_formula"] == "HNS = (F_candidate - F_sparse) / |F_human - F_sparse|"
    assert json.loads((root / "final" / "final.json").read_text())["best"]["id"] == summary["best_candidate_id"]


def test_report_is_self_contained_and_complete(finished_run):
    root, summary = finished_run
    page = (root / "report.html").read_text()
    external = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in external and "https://" not in external  # nothing fetched at view time
    assert "<script" not in page
    assert page.count("<svg") >= 3  # fitness over generations, training curves, components
    assert summary["best_candidate_id"] in page and "human-normalised score" in page
    assert "generation 0" in page and "generation 1" in page
    assert "feedback text built from this generation" in page
    assert "def</span> <span" in page or "compute_reward" in page  # highlighted code


def test_report_cli_regenerates_from_run_dir_alone(finished_run, tmp_path):
    root, _ = finished_run
    (root / "report.html").unlink()
    exe = Path(sys.executable).with_name("rewardsmith-report")
    r = subprocess.run([str(exe), f"run_dir={root}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (root / "report.html").exists()
    bad = subprocess.run([str(exe), f"run_dir={tmp_path / 'nope'}"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a rewardsmith run directory" in bad.stderr


def test_report_survives_a_run_with_failures(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"task": "cartpole", "status": "running"}))
    page = build_report(tmp_path)
    assert "no data" in page
