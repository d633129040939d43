import os
from pathlib import Path

import pytest

# Tests in this process may run JAX too; two host devices exercise the population split.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

TINY_TRAIN = {"num_envs": 4, "num_steps": 16, "total_timesteps": 2048, "num_minibatches": 2,
              "update_epochs": 2, "num_eval_envs": 4}


@pytest.fixture
def tiny_train():
    return dict(TINY_TRAIN)


def tiny_cfg(run_dir=None, **over):
    cfg = {
        "task": {"name": "cartpole", "file": None},
        "llm": {"provider": "offline"},
        "train": dict(TINY_TRAIN),
        "iterations": 2, "samples": 3, "seeds": 1, "seed": 0, "baselines": True,
        "stop_at_target": False, "final_eval": False, "max_generation_retries": 1, "worker_timeout_s": 600, "live": False,
    }
    cfg.update(over)
    return cfg


def _chromium():
    for b in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(b).exists() and Path("/usr/bin/chromedriver").exists():
            return b
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("chromium/chromedriver not installed")


def chrome_driver():
    """Headless Debian Chromium through chromedriver (.ci/run installs both); skipped outside CI when absent."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _chromium()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1600,1200"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
