"""Where a person gives feedback: a file, the terminal or the local web page. The session itself
(``session.Session``) knows none of them; each front-end imports it, and this module picks one."""

from __future__ import annotations

from pathlib import Path

from rewardsmith.feedback.records import FeedbackError, FeedbackRecord
from rewardsmith.feedback.session import Session


def _port(args: dict) -> int:
    try:
        return int(args.get("port", 8765))
    except ValueError:
        raise FeedbackError(f"port must be an integer, got {args['port']!r}") from None


def read_feedback_file(path: str | Path) -> dict:
    import json

    import yaml

    path = Path(path)
    if not path.is_file():
        raise FeedbackError(f"feedback file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise FeedbackError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FeedbackError(f"{path} must hold one object (best, worst, pairs, comments, overall, selection)")
    return data


def collect(session: Session, mode: str, args: dict, out=print) -> FeedbackRecord | None:
    """Run the session in ``mode`` (web, terminal or file; ``args`` as on the command line: file, host,
    port, timeout_s); returns the stored record, or None when nothing was submitted."""
    if mode == "file":
        if "file" not in args:
            raise FeedbackError("mode=file needs file=FEEDBACK.json")
        return session.submit(read_feedback_file(args["file"]), source="file")
    if mode == "terminal":
        from rewardsmith.feedback.terminal import run_terminal

        return run_terminal(session)
    if mode == "web":
        import time

        from rewardsmith.feedback.server import FeedbackServer

        timeout = float(args["timeout_s"]) if args.get("timeout_s") else None
        with FeedbackServer(session, host=args.get("host", "127.0.0.1"), port=_port(args)) as srv:
            out(f"feedback page for {session.task} generation {session.generation}: {srv.url}  "
                f"(submit there; Ctrl-C to stop)")
            rec = srv.wait(timeout)
            time.sleep(0.3)  # let the page receive its answer
            if rec is None:
                out(f"no feedback was submitted within {timeout:g} s")
            return rec
    raise FeedbackError(f"mode must be web, terminal or file, got {mode!r}")
