import os

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
