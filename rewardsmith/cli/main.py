"""``rewardsmith task=<name> ...``: a thin hydra shell over ``rewardsmith.evolve.run``."""

from __future__ import annotations

import os
import re
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


# Keys whose value is free text or a Python expression, never a hydra list or dict: a value such as
# next_state.root_pos[0] or -jnp.abs(x) is quoted for hydra's override grammar when it is not already.
TEXT_KEYS = re.compile(r"^(\+{0,2}task\.(?:fitness\.(?:expression|doc)|description))=(.*)$", re.DOTALL)


# Keys under which any name may be set (the environment's own arguments): task.kwargs.dt=0.05 adds
# the key as hydra's ++ does, so it needs no + in front.
OPEN_KEYS = re.compile(r"^task\.kwargs\.\w")


def normalize_overrides(argv: list[str]) -> list[str]:
    """The command line as a user types it, in hydra's override grammar."""
    out = []
    for arg in argv:
        if OPEN_KEYS.match(arg):
            arg = "++" + arg
        m = TEXT_KEYS.match(arg)
        value = m.group(2) if m else ""
        if m and value and not (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
            q = '"' if "'" in value and '"' not in value else "'"
            arg = f"{m.group(1)}={q}" + value.replace(q, "\\" + q) + q
        out.append(arg)
    return out


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.argv[1:] = normalize_overrides(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
