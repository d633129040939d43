import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rewardsmith.evaluate.final import hns
from rewardsmith.evolve import run
from rewardsmith.report import build_report

from conftest import chrome_driver, tiny_cfg


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
    # both branches asserted: a score where the baselines differ, none (not a division by ~0) where they tie
    if abs(h - s) > 1e-12:
        assert summary["human_normalised_score"] == pytest.approx((b - s) / abs(h - s))
    else:
        assert summary["human_normalised_score"] is None
    assert hns(b, h, h) is None
    assert hns(3.0, 2.0, 0.0) == pytest.approx(1.5) and hns(-1.0, 2.0, 4.0) == pytest.approx(-2.5)
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
    # the best reward's code, highlighted: keyword and function name each in a styled span
    assert re.search(r'<span style="[^"]+">def</span>(\s|<span[^>]*>\s*</span>)*<span style="[^"]+">compute_reward</span>', page)


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


def test_report_opens_in_headless_chromium_offline_and_shows_plots(finished_run, tmp_path):
    """As a new user would: open report.html in a browser; nothing is fetched, the charts and the rollout
    animations render, and a screenshot is not blank."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    root, summary = finished_run
    driver = chrome_driver()
    try:
        driver.get((root / "report.html").resolve().as_uri())
        assert summary["task"] in driver.title
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert not [u for u in fetched if not u.startswith(("data:", "file:"))], fetched
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) >= 3 and all(c.size["width"] > 100 and c.size["height"] > 100 for c in charts)
        drawn = driver.execute_script(
            "return [...document.querySelectorAll('svg.chart path')].filter(p => p.getTotalLength() > 10).length")
        assert drawn >= 3  # curves, not just empty axes
        gifs = driver.execute_script(
            "return [...document.querySelectorAll('img')].map(i => [i.complete, i.naturalWidth])")
        assert len(gifs) == 3 and all(ok and w > 100 for ok, w in gifs)  # best, human, sparse rollouts
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    img = Image.open(shot).convert("RGB")
    assert img.size[0] >= 1000 and len(img.getcolors(maxcolors=1 << 20) or []) > 50
