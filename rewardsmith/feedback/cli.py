"""``rewardsmith-feedback run_dir=PATH [mode=web|terminal|file] ...``: look at the latest generation's
policies, give feedback, and continue the search with it.

    mode=web       (default) a local page at http://127.0.0.1:8765/ (host=, port=; port=0 picks one)
    mode=terminal  rich tables and prompts, for machines without a browser
    mode=file      read the feedback from file=FEEDBACK.json|.yaml (scripts, tests)
    top=4          how many of the generation's best candidates to show
    then=resume    after submitting, run the next generation(s) (iterations=1); then=exit stops there
"""

from __future__ import annotations

import sys
from pathlib import Path

from rewardsmith.cli.common import int_arg
from rewardsmith.errors import UserError

KEYS = {"run_dir", "mode", "file", "host", "port", "top", "then", "iterations", "live", "timeout_s"}


def read_feedback_file(path: str | Path) -> dict:
    import json

    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"feedback file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold one object (best, worst, pairs, comments, overall, selection)")
    return data


def collect(session, mode: str, args: dict, out=print):
    """Run the session in ``mode``; returns the stored record, or None when nothing was submitted."""
    if mode == "file":
        if "file" not in args:
            raise UserError("mode=file needs file=FEEDBACK.json")
        return session.submit(read_feedback_file(args["file"]), source="file")
    if mode == "terminal":
        from rewardsmith.feedback.terminal import run_terminal

        return run_terminal(session)
    if mode == "web":
        import time

        from rewardsmith.feedback.server import FeedbackServer

        timeout = float(args["timeout_s"]) if args.get("timeout_s") else None
        with FeedbackServer(session, host=args.get("host", "127.0.0.1"), port=int_arg(args, "port", 8765)) as srv:
            out(f"feedback page for {session.task} generation {session.generation}: {srv.url}  "
                f"(submit there; Ctrl-C to stop)")
            rec = srv.wait(timeout)
            time.sleep(0.3)  # let the page receive its answer
            if rec is None:
                out(f"no feedback was submitted within {timeout:g} s")
            return rec
    raise UserError(f"mode must be web, terminal or file, got {mode!r}")


def main(argv: list[str] | None = None) -> int:
    from rewardsmith.cli.common import parse_kv, run_command

    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        args = parse_kv(argv, KEYS)
        if "run_dir" not in args:
            raise UserError("usage: rewardsmith-feedback run_dir=PATH [mode=web|terminal|file] [file=F] "
                            "[host=127.0.0.1] [port=8765] [top=4] [then=resume|exit] [iterations=1]")
        then = args.get("then", "resume")
        if then not in ("resume", "exit"):
            raise UserError(f"then must be resume or exit, got {then!r}")
        from rewardsmith.feedback.session import open_session

        session = open_session(args["run_dir"], top=int_arg(args, "top", 4))
        rec = collect(session, args.get("mode", "web"), args)
        if rec is None:
            return 1
        print(f"feedback for generation {rec.generation} saved to {Path(args['run_dir']) / 'feedback.json'}")
        if then == "exit":
            print(f"continue the search with: rewardsmith-resume run_dir={args['run_dir']}")
            return 0
        from rewardsmith.cli.resume import resume_with_display

        resume_with_display(args["run_dir"], int_arg(args, "iterations", 1), args.get("live", "auto"))
        return 0

    return run_command("rewardsmith-feedback", body, "stopped; anything submitted is in feedback.json")


if __name__ == "__main__":
    sys.exit(main())
