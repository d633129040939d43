"""``rewardsmith task=<name> ...``: a thin hydra shell over ``rewardsmith.evolve.run``."""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rewardsmith.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, summary_exit_code
from rewardsmith.errors import UserError


@hydra.main(config_path="pkg://rewardsmith.conf", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from rewardsmith.cli.display import Display
    from rewardsmith.evolve import run

    live = cfg.get("live", "auto")
    display = Display(live=None if live == "auto" else bool(live))
    run_dir = cfg.get("run_dir") or HydraConfig.get().runtime.output_dir
    try:
        summary = run(cfg, run_dir, display=display)
    except UserError as e:
        print(f"rewardsmith: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"rewardsmith: interrupted; everything so far is in {run_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    code = summary_exit_code("rewardsmith", summary, run_dir)
    if code:
        sys.exit(code)


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    _main()


if __name__ == "__main__":
    main()
