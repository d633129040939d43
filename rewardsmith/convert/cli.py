"""``rewardsmith-import file=eureka_reward.py task=ant out=ant_reward.py``: an Eureka / Isaac Gym
reward in PyTorch, converted to the reward contract, checked by the same gate as every candidate."""

from __future__ import annotations

import sys
from pathlib import Path

from rewardsmith.errors import UserError


def import_reward(file: str | Path, task: str, out: str | Path, constants: dict[str, float] | None = None) -> Path:
    from rewardsmith.convert.eureka import ConvertError, convert, header
    from rewardsmith.rundir import atomic_write_text
    from rewardsmith.tasks import get_task
    from rewardsmith.tasks.registry import UnknownTaskError
    from rewardsmith.validate.static import check_source

    path = Path(file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        task_obj = get_task(task)
    except UnknownTaskError as e:
        raise UserError(str(e)) from None
    try:
        conv = convert(path.read_text(encoding="utf-8"), task_obj.schema, task_obj.name, constants)
    except ConvertError as e:
        raise UserError(f"{path}: cannot convert: " + "; ".join(e.problems)) from None
    text = header(path, task_obj.name, conv, task_obj.schema) + conv.source
    violations = check_source(text, task_obj.schema.names)
    if violations:
        raise UserError(f"{path}: converted, but the result is rejected by the gate: {violations[0]}")
    atomic_write_text(out, text)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    from rewardsmith.cli.common import parse_kv, run_command

    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        constants = {}
        for arg in [a for a in argv if a.startswith("const.")]:
            name, _, value = arg[len("const."):].partition("=")
            try:
                constants[name] = float(value)
            except ValueError:
                raise UserError(f"{arg}: a constant needs a number, e.g. const.{name or 'rew_scale'}=1.0") from None
        args = parse_kv([a for a in argv if not a.startswith("const.")], {"file", "task", "out"})
        if not {"file", "task", "out"} <= set(args):
            raise UserError("usage: rewardsmith-import file=EUREKA_REWARD.py task=TASK out=OUT.py [const.NAME=VALUE ...]")
        print(import_reward(args["file"], args["task"], args["out"], constants))
        return 0

    return run_command("rewardsmith-import", body, "stopped; nothing was written")


if __name__ == "__main__":
    sys.exit(main())
