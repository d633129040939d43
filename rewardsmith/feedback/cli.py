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

from rewardsmith.cli.common import int_arg
from rewardsmith.errors import UserError
from rewardsmith.feedback.frontends import collect
from rewardsmith.rundir import RunDir

KEYS = {"run_dir", "mode", "file", "host", "port", "top", "then", "iterations", "live", "timeout_s"}


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
        print(f"feedback for generation {rec.generation} saved to {RunDir(args['run_dir'], create=False).feedback_path}")
        if then == "exit":
            print(f"continue the search with: rewardsmith-resume run_dir={args['run_dir']}")
            return 0
        from rewardsmith.cli.resume import resume_with_display

        resume_with_display(args["run_dir"], int_arg(args, "iterations", 1), args.get("live", "auto"))
        return 0

    return run_command("rewardsmith-feedback", body, "stopped; anything submitted is in feedback.json")


if __name__ == "__main__":
    sys.exit(main())
