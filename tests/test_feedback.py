"""Human-in-the-loop feedback: records, Elo, selection, text constraints, the web page driven in
headless Chromium, the terminal session through a pseudo-terminal, file mode, bad input, and resume."""

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewardsmith.evolve import resume, run
from rewardsmith.feedback.constraints import text_constraints
from rewardsmith.evaluate.ranking import rank_candidates
from rewardsmith.feedback.records import (FeedbackError, FeedbackRecord, Pair, elo_ratings, feedback_text,
                                          parse_submission, save_feedback)
from rewardsmith.feedback.server import FeedbackServer
from rewardsmith.feedback.session import open_session
from rewardsmith.propose.offline import Term, apply_constraints
from rewardsmith.records import Candidate, MemberResult
from rewardsmith.tasks import get_task

from conftest import chrome_driver, tiny_cfg
from llm_server import ScriptedLLM
from test_llm import llm_cfg, user_contents

IDS = ["g01-aaaa", "g01-bbbb", "g01-cccc"]


# -- records, Elo, selection -------------------------------------------------------------------------

def test_submission_is_checked_against_the_candidates_shown():
    rec = parse_submission({"best": IDS[0], "worst": IDS[2], "pairs": [{"a": IDS[1], "b": IDS[2], "winner": IDS[1]},
                                                                      {"a": IDS[0], "b": IDS[1], "winner": None}],
                            "comments": {IDS[1]: "  shakes  ", IDS[2]: ""}, "overall": "ok"}, 1, IDS, "web")
    assert rec.best == IDS[0] and rec.worst == IDS[2] and rec.selection == "both"
    assert rec.pairs == [Pair(IDS[1], IDS[2], IDS[1])]  # the skipped pair is dropped
    assert rec.comments == {IDS[1]: "shakes"}
    bad = [({"best": "g09-zzzz"}, "not one of the candidates shown"),
           ({"best": IDS[0], "worst": IDS[0]}, "both the best and the worst"),
           ({"pairs": [{"a": IDS[0], "b": IDS[1], "winner": IDS[2]}]}, "must be one of them"),
           ({"pairs": [{"a": IDS[0], "b": IDS[0], "winner": IDS[0]}]}, "two different candidates"),
           ({}, "the feedback is empty"),
           ({"overall": "x", "rating": 3}, "unknown feedback keys: ['rating']"),
           ({"overall": "x", "selection": "vibes"}, "selection must be one of"),
           ({"overall": "x", "generation": 0}, "for generation 0, but the session is for generation 1"),
           ({"overall": "x" * 5000}, "the limit is 4000")]
    for data, msg in bad:
        with pytest.raises(FeedbackError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            parse_submission(data, 1, IDS, "web")


def test_elo_follows_choices_and_best_worst_imply_pairs():
    rec = FeedbackRecord(generation=0, shown=IDS, best=IDS[2], worst=IDS[0])
    r = elo_ratings([rec])
    assert r[IDS[2]] > r[IDS[1]] > r[IDS[0]]
    assert sum(r.values()) == pytest.approx(3000.0)  # Elo moves points, it does not create them
    # a later pair choice moves the ranking
    r2 = elo_ratings([rec, FeedbackRecord(generation=1, shown=IDS[:2], pairs=[Pair(IDS[0], IDS[1], IDS[0])] * 3)])
    assert r2[IDS[0]] > r2[IDS[1]]


def _cand(cid, fitness):
    return Candidate(id=cid, generation=1, source="", origin="offline", fitness=fitness)


def test_selection_modes_rank_by_fitness_preference_or_both():
    cands = [_cand("a", 10.0), _cand("b", 9.0), _cand("e", 5.0), _cand("c", 1.0), _cand("d", None)]
    ratings = {"c": 1100.0, "b": 1050.0, "e": 950.0, "a": 900.0}
    assert [c.id for c in rank_candidates(cands, ratings, "fitness")] == ["a", "b", "e", "c"]
    assert [c.id for c in rank_candidates(cands, ratings, "preference")] == ["c", "b", "e", "a"]
    assert [c.id for c in rank_candidates(cands, ratings, "both")][0] == "b"  # second on both counts
    assert [c.id for c in rank_candidates(cands, {"e": 1000.0}, "preference")] == ["e", "a", "b", "c"]
    assert [c.id for c in rank_candidates(cands, {}, "preference")] == ["a", "b", "e", "c"]


def test_equal_fitness_goes_to_the_reward_that_taught_sooner():
    """Candidates tied at the task's ceiling rank by their training curves (mean over checkpoints
    and seeds), whatever order they were proposed in; a failed seed's curve does not count."""
    def cand(cid, fitness, curves, ok=True):
        return Candidate(id=cid, generation=0, source="", origin="offline", fitness=fitness,
                         members=[MemberResult(seed=i, ok=ok, fitness=fitness, fitness_curve=c)
                                  for i, c in enumerate(curves)])

    late = cand("late", 1.0, [[0.0, 0.0, 1.0], [0.0, 0.5, 1.0]])
    soon = cand("soon", 1.0, [[0.0, 1.0, 1.0], [0.5, 1.0, 1.0]])
    gappy = cand("gappy", 1.0, [[None, 1.0, float("nan")], [1.0, 1.0]])
    lower = cand("lower", 0.9, [[0.9, 0.9, 0.9]])
    nocurve = cand("nocurve", 1.0, [[1.0, 1.0]], ok=False)
    ranked = [c.id for c in rank_candidates([nocurve, late, lower, soon, gappy], {}, "fitness")]
    assert ranked == ["gappy", "soon", "late", "nocurve", "lower"]


def test_feedback_text_names_choices_and_words():
    rec = FeedbackRecord(generation=2, shown=IDS, best=IDS[0], worst=IDS[1], pairs=[Pair(IDS[1], IDS[2], IDS[2])],
                         comments={IDS[0]: "the cart drifts right"}, overall="keep x near zero")
    text = feedback_text(rec, {IDS[0]: 480.0})
    assert f"Best behaviour: {IDS[0]} (task fitness 480)" in text and f"Worst behaviour: {IDS[1]}" in text
    assert f"Preferred {IDS[2]} over {IDS[1]}" in text
    assert "the cart drifts right" in text and "Overall: keep x near zero" in text


def test_text_becomes_term_constraints_for_the_offline_proposer():
    schema = get_task("cartpole").schema
    cons, unused = text_constraints("theta_dot is too large. Keep x near zero! It looks fine otherwise.", schema)
    assert {(c.field, c.direction) for c in cons} == {("theta_dot", "penalize"), ("x", "penalize")}
    assert unused == ["It looks fine otherwise."]
    terms = [Term("magnitude", "theta_dot", 1.0), Term("value", "x", 2.0, sign=1.0), Term("upright", "theta")]
    out, applied = apply_constraints(terms, [c.to_json() for c in cons], schema)
    names = {t.name for t in out}
    assert "magnitude_theta_dot" not in names and "value_x" not in names  # they worked against the request
    assert {"sq_penalty_theta_dot", "sq_penalty_x", "upright_theta"} <= names
    assert any("penalised theta_dot" in a for a in applied)
    pend = get_task("pendulum").schema
    cons, unused = text_constraints("Use less torque, and the swing is too slow", pend)
    assert {(c.field, c.direction) for c in cons} == {("torque", "penalize")} and unused == ["the swing is too slow"]
    cons, _ = text_constraints("The actions are jerky.", get_task("mountain_car_continuous").schema)
    assert {(c.field, c.direction) for c in cons} == {("action", "penalize")}


# -- a real tiny run to give feedback on --------------------------------------------------------------

@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fb") / "run"
    run(tiny_cfg(iterations=1, samples=4, seeds=1), d)
    return d


@pytest.fixture
def run_dir(base_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    return d


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_session_shows_the_latest_generation_with_rollouts(run_dir):
    s = open_session(run_dir, top=2)
    assert s.generation == 0 and len(s.candidates) == 2
    fits = [sc.candidate.fitness for sc in s.candidates]
    assert fits == sorted(fits, reverse=True)
    r = s.candidates[0].rollout
    assert r is not None and r["frames"] and r["parents"] == [-1, 0]
    assert set(r["fields"]) == set(get_task("cartpole").schema.names)
    assert len(r["reward"]) == len(r["fields"]["x"]) and r["episode_steps"] >= 1
    assert all(len(v) == len(r["reward"]) for v in r["components"].values())


def test_web_page_in_headless_chromium_submits_and_the_next_prompt_has_it(run_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    session = open_session(run_dir, top=3)
    ids = session.ids
    driver = chrome_driver()
    try:
        with FeedbackServer(session, port=0) as srv:
            driver.get(srv.url)
            assert f"generation {session.generation}" in driver.title
            # the rollouts are drawn: a canvas per candidate, and the page asks nothing of the network
            assert len(driver.find_elements(By.CSS_SELECTOR, ".card canvas")) == len(ids)
            logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not logs, logs
            driver.find_element(By.CSS_SELECTOR, f"input[name=best][value='{ids[1]}']").click()
            driver.find_element(By.CSS_SELECTOR, f"input[name=worst][value='{ids[0]}']").click()
            driver.find_element(By.CSS_SELECTOR, f"tr.pair[data-a='{ids[1]}'][data-b='{ids[2]}'] "
                                                 f"input[value='{ids[2]}']").click()
            driver.find_element(By.CSS_SELECTOR, f"textarea[data-id='{ids[0]}']").send_keys("theta_dot is too large")
            driver.find_element(By.ID, "overall").send_keys("The cart drifts off the track: keep x near zero.")
            Select(driver.find_element(By.ID, "selection")).select_by_value("preference")
            driver.find_element(By.ID, "submit").click()
            WebDriverWait(driver, 20).until(lambda d: "saved" in d.find_element(By.ID, "status").text)
            assert srv.wait(5) is not None
            # a second submit from the page is refused and changes nothing
            before = (run_dir / "feedback.json").read_bytes()
            driver.execute_script("document.getElementById('submit').disabled = false;")
            driver.find_element(By.ID, "submit").click()
            WebDriverWait(driver, 20).until(lambda d: "already submitted" in d.find_element(By.ID, "status").text)
            assert (run_dir / "feedback.json").read_bytes() == before
    finally:
        driver.quit()
    rec = json.loads((run_dir / "feedback.json").read_text())["records"][0]
    assert rec["generation"] == 0 and rec["source"] == "web" and rec["best"] == ids[1] and rec["worst"] == ids[0]
    assert rec["pairs"] == [{"a": ids[1], "b": ids[2], "winner": ids[2]}]
    assert rec["comments"] == {ids[0]: "theta_dot is too large"} and rec["selection"] == "preference"

    # continue the search with an LLM proposer (a local OpenAI-compatible server): the feedback is in
    # the next generation's prompt, and the preferred candidate leads the ranking
    with ScriptedLLM([]) as server:
        summary = resume(run_dir, iterations=1, overrides={
            "llm": llm_cfg(server.url, tmp_path / "cache"), "final_eval": False})
        prompts = [user_contents(r) for r in server.requests]
    assert prompts and all("The cart drifts off the track: keep x near zero." in p for p in prompts)
    assert all(f"Best behaviour: {ids[1]}" in p and "theta_dot is too large" in p for p in prompts)
    assert summary["selection"] == "preference" and summary["sessions"] == 2
    assert summary["human_feedback"]["generations"] == [0]
    ratings = summary["human_feedback"]["preference_ratings"]
    assert max(ratings, key=ratings.get) == ids[1]
    gen1 = json.loads((run_dir / "generations" / "gen_01" / "generation.json").read_text())
    assert "keep x near zero" in gen1["human_feedback"]
    assert "keep x near zero" in (run_dir / "report.html").read_text()


def _pty_session(cmd: list[str], answers: list[tuple[str, str]], timeout: float = 60.0) -> tuple[int, str]:
    """Run ``cmd`` on a pseudo-terminal; each time ``prompt`` appears, type ``answer``."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out, pending, deadline = "", list(answers), time.time() + timeout
    seen = 0
    try:
        while time.time() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096).decode("utf-8", "replace")
                except OSError:
                    break
                out += chunk
            if pending and pending[0][0] in out[seen:]:
                seen = out.index(pending[0][0], seen) + len(pending[0][0])
                os.write(master, (pending.pop(0)[1] + "\r").encode())
            if proc.poll() is not None and not r:
                break
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return proc.returncode, out


def test_terminal_session_through_a_pseudo_terminal(run_dir):
    ids = open_session(run_dir, top=2).ids
    answers = [("behaves best?", "2"), ("behaves worst?", "2"),  # refused: the best cannot be the worst
               ("behaves worst?", "1"), ("Which is better:", "2"),
               (f"wrong with 1. {ids[0]}?", "it wobbles"), (f"wrong with 2. {ids[1]}?", ""),
               ("do differently?", "less x drift please"), ("Rank candidates from now on by", "both"),
               ("Submit this feedback?", "y")]
    rc, out = _pty_session([sys.executable, "-m", "rewardsmith.feedback.cli", f"run_dir={run_dir}", "mode=terminal",
                            "top=2", "then=exit"], answers)
    assert rc == 0, out[-2000:]
    assert "the worst cannot be the best as well" in out
    assert "reward code" in out and ids[0] in out
    rec = json.loads((run_dir / "feedback.json").read_text())["records"][0]
    assert rec["source"] == "terminal" and rec["best"] == ids[1] and rec["worst"] == ids[0]
    assert rec["pairs"] == [{"a": ids[0], "b": ids[1], "winner": ids[1]}]
    assert rec["comments"] == {ids[0]: "it wobbles"} and rec["overall"] == "less x drift please"


def test_file_mode_then_resume_with_the_offline_proposer(run_dir, tmp_path):
    ids = open_session(run_dir).ids
    fb = tmp_path / "fb.yaml"
    fb.write_text(f"best: {ids[-1]}\noverall: theta_dot is too large\nselection: preference\n")
    r = subprocess.run([sys.executable, "-m", "rewardsmith.feedback.cli", f"run_dir={run_dir}", "mode=file",
                        f"file={fb}", "then=resume", "live=false"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and [g["generation"] for g in summary["per_generation_best"]] == [0, 1]
    given = json.loads((run_dir / "generations" / "gen_01" / "proposer_input.json").read_text())
    assert "theta_dot is too large" in given["human_feedback"]
    assert given["constraints"] == [{"field": "theta_dot", "direction": "penalize",
                                     "sentence": "theta_dot is too large"}]
    assert given["ranking"][0] == ids[-1]  # the preferred candidate is the parent the search starts from
    cands = [json.loads(p.read_text()) for p in (run_dir / "generations" / "gen_01").glob("candidates/*/candidate.json")]
    assert cands and all("theta_dot" in c["source"] for c in cands)  # the constraint holds in every child
    assert all(c["meta"]["constraints"] and "theta_dot is too large" in c["meta"]["human_feedback"] for c in cands)


def test_bad_input_is_clear_and_loses_nothing(run_dir, tmp_path):
    cli = [sys.executable, "-m", "rewardsmith.feedback.cli"]

    def call(*args):
        return subprocess.run(cli + list(args), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)

    r = call(f"run_dir={tmp_path / 'nope'}")
    assert r.returncode == 2 and "no rewardsmith run directory" in r.stderr and "Traceback" not in r.stderr
    # terminal mode without a terminal
    r = call(f"run_dir={run_dir}", "mode=terminal")
    assert r.returncode == 2 and "needs an interactive terminal" in r.stderr
    # a port in use
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    before = _snapshot(run_dir)
    try:
        r = call(f"run_dir={run_dir}", f"port={port}", "then=exit")
        assert r.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in r.stderr
    finally:
        sock.close()
    assert _snapshot(run_dir) == before
    # a bad file changes nothing
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"best": "g07-nothere"}))
    r = call(f"run_dir={run_dir}", "mode=file", f"file={bad}", "then=exit")
    assert r.returncode == 2 and "not one of the candidates shown" in r.stderr
    assert _snapshot(run_dir) == before
    # double submit: the second is refused and the first is kept byte for byte
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"overall": "first"}))
    assert call(f"run_dir={run_dir}", "mode=file", f"file={good}", "then=exit").returncode == 0
    first = (run_dir / "feedback.json").read_bytes()
    good.write_text(json.dumps({"overall": "second"}))
    r = call(f"run_dir={run_dir}", "mode=file", f"file={good}", "then=exit")
    assert r.returncode == 2 and "already has feedback" in r.stderr
    assert (run_dir / "feedback.json").read_bytes() == first
    with pytest.raises(FeedbackError, match="already has feedback"):
        save_feedback(run_dir, FeedbackRecord(generation=0, shown=[], overall="third"))
    assert (run_dir / "feedback.json").read_bytes() == first


def test_empty_generation_has_nothing_to_show(run_dir):
    for p in (run_dir / "generations" / "gen_00" / "candidates").glob("*/candidate.json"):
        c = json.loads(p.read_text())
        c.update(status="rejected", fitness=None)
        p.write_text(json.dumps(c))
    with pytest.raises(FeedbackError, match="generation 0 has no trained candidates to look at"):
        open_session(run_dir)


def test_resume_finishes_an_interrupted_run_and_keeps_what_it_moves(run_dir):
    # the run was cut off during generation 1: candidates written, no generation record
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["iterations"] = 2
    (run_dir / "config.json").write_text(json.dumps(cfg))
    s = json.loads((run_dir / "summary.json").read_text())
    s["status"] = "running"
    (run_dir / "summary.json").write_text(json.dumps(s))
    stray = run_dir / "generations" / "gen_01" / "candidates" / "g01-deadbeef"
    stray.mkdir(parents=True)
    (stray / "reward.py").write_text("# half-written\n")
    summary = resume(run_dir, overrides={"final_eval": False})
    assert summary["status"] == "complete" and summary["sessions"] == 2
    assert [g["generation"] for g in summary["per_generation_best"]] == [0, 1]
    assert (run_dir / "interrupted" / "gen_01-1" / "candidates" / "g01-deadbeef" / "reward.py").exists()
    assert not (run_dir / "generations" / "gen_01" / "candidates" / "g01-deadbeef").exists()
    assert summary["wall_time_s"] > s["wall_time_s"]
    assert summary["human_baseline_fitness"] == s["human_baseline_fitness"]  # baselines are not retrained


def test_resume_refuses_what_is_not_a_run(tmp_path):
    from rewardsmith.errors import UserError

    with pytest.raises(UserError, match="not a rewardsmith run directory"):
        resume(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run"):
        run(tiny_cfg(), tmp_path)


def test_feedback_after_each_generation_inside_a_run(tmp_path):
    """feedback=file: after generation 0 the loop reads the file, and generation 1's proposer gets it;
    the default (feedback: none) asks nothing."""
    from rewardsmith.evolve.settings import feedback_mode as _feedback_mode

    assert _feedback_mode({"feedback": "none"}) == "" and _feedback_mode({}) == ""
    fb = tmp_path / "fb.json"
    fb.write_text(json.dumps({"overall": "keep x near zero", "selection": "fitness"}))
    messages = []

    class Recorder:
        def message(self, text):
            messages.append(text)

        def __getattr__(self, name):
            return lambda *a, **k: None

    summary = run(tiny_cfg(iterations=2, samples=2, baselines=False, feedback="file", feedback_file=str(fb)),
                  tmp_path / "run", display=Recorder())
    assert summary["human_feedback"]["generations"] == [0]  # not after the last generation
    given = json.loads((tmp_path / "run" / "generations" / "gen_01" / "proposer_input.json").read_text())
    assert "Overall: keep x near zero" in given["human_feedback"]
    assert not any("no human feedback" in m for m in messages), messages
