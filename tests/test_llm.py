import json
import subprocess
import sys

import pytest

from rewardsmith.errors import UserError
from rewardsmith.evolve import run
from rewardsmith.propose import make_proposer
from rewardsmith.propose import llm_client
from rewardsmith.propose.base import ProposalContext
from rewardsmith.propose.llm import extract_code
from rewardsmith.tasks import get_task

from conftest import tiny_cfg
from llm_server import GOOD, ScriptedLLM, good


def llm_cfg(url, cache_dir, **over):
    cfg = {"provider": "openai_compatible", "model": "test-model", "api_base": url, "api_key_env": None,
           "timeout_s": 1.0, "max_retries": 3, "retry_backoff_s": 0.05, "concurrency": 1, "n_mode": "fanout",
           "max_attempts": 3, "cache": "readwrite", "cache_dir": str(cache_dir), "temperature": 1.0}
    cfg.update(over)
    return cfg


def user_contents(req):
    return "\n".join(m["content"] for m in req["body"]["messages"] if m["role"] == "user")


def test_llm_run_against_local_server_regenerates_and_replays(tmp_path):
    cache = tmp_path / "cache"
    script = ["429", "prose", "bad", "timeout"]
    with ScriptedLLM(script, sleep_s=3.0) as server:
        cfg = tiny_cfg(llm=llm_cfg(server.url, cache), iterations=2, samples=2, baselines=False)
        summary = run(cfg, tmp_path / "run1")
        reqs = list(server.requests)
        assert summary["status"] == "complete"
        assert summary["proposer_kind"] == "llm" and "LLM openai/test-model" in summary["proposer"]
        # the bad answers were regenerated with the error text in the next request
        fixes = [user_contents(r) for r in reqs if "could not be used" in user_contents(r)]
        assert any("no ```python code block" in f for f in fixes)
        assert any("import of 'os' is not allowed" in f for f in fixes)
        # the 429 and the timeout were retried; every request sent is counted, the failed tries too
        assert summary["llm"]["retries"] >= 2
        assert summary["llm"]["calls"] == len(reqs)
        assert summary["llm"]["failed_calls"] == summary["llm"]["retries"]
        assert summary["llm"]["prompt_tokens"] > 0
        assert summary["llm"]["cost_usd"] == "unknown"  # a local model has no price: not 0
        # generation 1 was told about generation 0
        gen1 = [r for r in reqs if "Generation 0 has been trained" in user_contents(r)]
        assert gen1 and "task fitness" in user_contents(gen1[0])
        # conversations and attempt history are kept in the run dir
        slots = sorted((tmp_path / "run1" / "llm" / "gen_00").glob("slot_*.json"))
        assert len(slots) == 2
        histories = [json.loads(p.read_text())["attempts"] for p in slots]
        assert any(len(h) >= 2 and h[0]["error"] for h in histories)
        cands = [json.loads(p.read_text()) for p in (tmp_path / "run1").rglob("candidate.json")]
        assert all(c["origin"] == "llm:openai/test-model" for c in cands)

        # the same run again, replayed from the cache: zero HTTP requests
        n_before = len(server.requests)
        cfg2 = tiny_cfg(llm=llm_cfg(server.url, cache, cache="replay"), iterations=2, samples=2, baselines=False)
        summary2 = run(cfg2, tmp_path / "run2")
        assert len(server.requests) == n_before
        assert summary2["llm"]["calls"] == 0 and summary2["llm"]["cached_calls"] > 0
        ids1 = sorted(c["id"] for c in cands)
        ids2 = sorted(json.loads(p.read_text())["id"] for p in (tmp_path / "run2").rglob("candidate.json"))
        assert ids1 == ids2


def test_n_samples_in_one_request_where_supported(tmp_path):
    with ScriptedLLM([]) as server:
        prop = make_proposer(llm_cfg(server.url, tmp_path / "c", n_mode="n"), run_dir=tmp_path)
        props = prop.propose(ProposalContext(task=get_task("cartpole"), generation=0, k=3, history=[]))
        assert len(server.requests) == 1 and server.requests[0]["body"]["n"] == 3
        assert len({p.source for p in props}) == 3


def test_providers_without_n_get_k_concurrent_calls(tmp_path, monkeypatch):
    """litellm's offline mock hook stands in for the provider; Anthropic has no `n`."""
    calls = []
    real = llm_client.completion

    def mocked(litellm, **kwargs):
        calls.append(kwargs)
        return real(litellm, mock_response=good(len(calls)), **kwargs)

    monkeypatch.setattr(llm_client, "completion", mocked)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    cfg = {"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "api_key_env": "ANTHROPIC_API_KEY",
           "cache": "off", "concurrency": 4, "timeout_s": 5}
    prop = make_proposer(cfg, run_dir=tmp_path)
    assert prop.client.supports_n() is False
    props = prop.propose(ProposalContext(task=get_task("cartpole"), generation=0, k=4, history=[]))
    assert len(calls) == 4 and all("n" not in c for c in calls)
    assert all(c["timeout"] == 5 for c in calls)
    assert len(props) == 4
    assert prop.usage()["calls"] == 4


def test_openai_supports_n_per_litellm(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    prop = make_proposer({"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"})
    assert prop.client.supports_n() is True


def test_missing_key_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="set the environment variable OPENAI_API_KEY"):
        make_proposer({"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"})


def test_unreachable_server_is_one_line_naming_the_url(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(UserError, match=f"cannot reach the LLM server at {url}"):
        run(tiny_cfg(llm=llm_cfg(url, tmp_path / "c")), tmp_path / "run")
    assert not (tmp_path / "run" / "generations").exists()


def test_token_budget_stops_proposing_cleanly(tmp_path):
    with ScriptedLLM([]) as server:
        cfg = tiny_cfg(llm=llm_cfg(server.url, tmp_path / "c", max_tokens=1), iterations=3, samples=2,
                       baselines=False)
        summary = run(cfg, tmp_path / "run")
    assert "token budget of 1 reached" in summary["stopped_by_budget"]
    assert len(summary["per_generation_best"]) == 1  # generation 0 trained, then proposing stopped
    assert summary["best_fitness"] is not None
    # sample 1 found the budget spent by sample 0: a record, not a vanished sample
    by_status = {c["status"]: c for c in _candidates(tmp_path / "run")}
    assert set(by_status) == {"trained", "provider_failed"}
    lost = by_status["provider_failed"]
    assert lost["validation"]["reason"] == "budget reached: token budget of 1 reached"
    assert lost["meta"]["slot"] == 1 and not lost["members"]


def test_extract_code():
    assert extract_code("no code") is None
    assert extract_code("```python\nx = 1\n```") is None
    code = extract_code(GOOD.format(temp=0.1))
    assert code.startswith("import jax.numpy") and "def compute_reward" in code
    two = "```python\ndef compute_reward(a, b, c):\n    return 1\n```\ntext\n```\ndef compute_reward(state, action, next_state):\n    pass\n```"
    assert "state, action" in extract_code(two)


def test_offline_runs_never_import_litellm():
    code = ("import sys; import rewardsmith.evolve.loop, rewardsmith.cli.main, rewardsmith.propose; "
            "from rewardsmith.propose import make_proposer; make_proposer({'provider': 'offline'}); "
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _candidates(run_dir, gen=0):
    return [json.loads(p.read_text()) for p in sorted((run_dir / "generations" / f"gen_{gen:02d}" / "candidates")
                                                      .glob("*/candidate.json"))]


def test_sample_without_code_is_a_candidate_and_a_retry_draws_new_samples(tmp_path):
    cache = tmp_path / "cache"
    # generation 0: both samples answer prose on every attempt; the retry must ask again, not replay that
    with ScriptedLLM(["prose", "prose"], fixes=["prose", "prose"]) as server:
        cfg = tiny_cfg(llm=llm_cfg(server.url, cache, max_attempts=2), iterations=1, samples=2, baselines=False)
        summary = run(cfg, tmp_path / "run1")
        first_try = 4  # 2 samples x 2 attempts
        assert len(server.requests) > first_try  # the retry made new requests
        n_requests = len(server.requests)
        assert summary["status"] == "complete" and summary["best_fitness"] is not None
        cands = _candidates(tmp_path / "run1")
        no_code = [c for c in cands if c["status"] == "no_code"]
        assert len(no_code) == 2  # no sample vanished
        for c in no_code:
            assert c["validation"]["stage"] == "proposal" and "no code block" in c["validation"]["reason"]
            assert len(c["validation"]["details"]) == 2
            assert all("no ```python code block" in d for d in c["validation"]["details"])
            assert not c["members"]
        trained = [c for c in cands if c["status"] == "trained"]
        assert trained
        retry = json.loads((tmp_path / "run1" / "generations" / "gen_00" / "generation_retry1.json").read_text())
        assert retry["best_id"] in {c["id"] for c in trained}
        html = (tmp_path / "run1" / "report.html").read_text()
        assert "no_code" in html and "no code block" in html

        # replaying the finished run still makes no request and gives the same candidates
        cfg2 = tiny_cfg(llm=llm_cfg(server.url, cache, cache="replay", max_attempts=2), iterations=1, samples=2,
                        baselines=False)
        run(cfg2, tmp_path / "run2")
        assert len(server.requests) == n_requests
        assert sorted(c["id"] for c in _candidates(tmp_path / "run2")) == sorted(c["id"] for c in cands)


def test_a_later_generation_or_seed_with_the_same_prompt_draws_new_samples(tmp_path):
    from rewardsmith.propose.llm_client import LLMClient, LLMSettings

    with ScriptedLLM([]) as server:
        client = LLMClient(LLMSettings.from_cfg(llm_cfg(server.url, tmp_path / "c")))
        msgs = [{"role": "user", "content": "write a reward"}]
        a = client.complete(msgs, [0], generation=0, attempt=0)
        b = client.complete(msgs, [0], generation=1, attempt=0)
        c = client.complete(msgs, [0], generation=0, attempt=0, retry=1)
        d = client.complete(msgs, [0], generation=0, attempt=0, seed=7)
        assert len(server.requests) == 4 and len({a[0], b[0], c[0], d[0]}) == 4
        assert client.complete(msgs, [0], generation=0, attempt=0) == a  # the same draw: a cache hit
        assert len(server.requests) == 4


def test_litellm_log_lines_go_to_the_run_log_only(tmp_path, capfd):
    import io
    import logging

    console = io.StringIO()  # what hydra's console handler on the root logger would print
    handler = logging.StreamHandler(console)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with ScriptedLLM([]) as server:
            cfg = tiny_cfg(llm=llm_cfg(server.url, tmp_path / "c"), iterations=1, samples=1, baselines=False,
                           final_eval=False)
            run(cfg, tmp_path / "run")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    out, err = capfd.readouterr()
    log = (tmp_path / "run" / "llm" / "litellm.log").read_text()
    assert "LiteLLM" in log and "completion()" in log  # litellm's INFO lines are kept ...
    for text in (console.getvalue(), out, err):  # ... and printed nowhere
        assert "completion()" not in text and "LiteLLM" not in text


class Lines:
    """A display that keeps the console's lines (the plain display, written to a string)."""

    def __init__(self):
        import io

        from rewardsmith.cli.display import Display

        self.out = io.StringIO()
        self.display = Display(live=False, stream=self.out)

    def text(self) -> str:
        return self.out.getvalue()


def _calls(run_dir):
    return json.loads((run_dir / "llm" / "calls.json").read_text())


def _usage(run_dir, gen=0):
    return json.loads((run_dir / "llm" / f"gen_{gen:02d}" / "usage.json").read_text())


def test_regeneration_that_hangs_past_the_timeout_is_recorded_and_the_others_train(tmp_path):
    # sample 1's first answer is refused by the gate; its regeneration never answers (first try and retry)
    with ScriptedLLM(["good", "bad", "good"], fixes=["hang", "hang"]) as server:
        cfg = tiny_cfg(llm=llm_cfg(server.url, tmp_path / "c", timeout_s=1.0, max_retries=1), iterations=1,
                       samples=3, baselines=False, max_generation_retries=0)
        lines = Lines()
        summary = run(cfg, tmp_path / "run", display=lines.display)
        n_requests = len(server.requests)
    assert n_requests == 5  # 3 first answers, the regeneration and its retry
    cands = _candidates(tmp_path / "run")
    assert sorted(c["status"] for c in cands) == ["provider_failed", "trained", "trained"]
    lost = next(c for c in cands if c["status"] == "provider_failed")
    assert lost["meta"]["slot"] == 1 and not lost["members"]
    assert lost["validation"]["stage"] == "provider"
    assert "timed out after 1 retry (1 s per try)" in lost["validation"]["reason"]
    assert "import os" in lost["source"]  # the last answer's code is kept
    details = lost["validation"]["details"]
    assert len(details) == 2 and "import of 'os' is not allowed" in details[0]
    assert details[1].startswith("attempt 2: no answer: LLM call to openai/test-model timed out")
    # every request sent is in calls.json, the two that timed out with their error and seconds
    calls = _calls(tmp_path / "run")
    assert len(calls) == n_requests
    failed = [c for c in calls if c["error"]]
    assert [(c["slot"], c["attempt"], c["retry"]) for c in failed] == [(1, 1, 0), (1, 1, 1)]
    assert all("Timeout" in c["error"] and 0.9 <= c["seconds"] < 10 for c in failed)
    usage = _usage(tmp_path / "run")
    assert usage["calls"] == n_requests and usage["failed_calls"] == 2 and usage["retries"] == 1
    assert usage["seconds"] >= 2.0 and summary["llm"]["calls"] == n_requests
    # one console line for it; the next generation's reflection counts it
    assert f"{lost['id']} provider failed: LLM call to openai/test-model timed out" in lines.text()
    gen = json.loads((tmp_path / "run" / "generations" / "gen_00" / "generation.json").read_text())
    assert lost["id"] in gen["candidate_ids"] and gen["best_id"] is not None
    assert "1 of 3 sample(s) got no answer from the LLM provider" in gen["reflection"]
    assert summary["candidates"] == {"trained": 2, "provider_failed": 1}


def test_regeneration_answered_500_until_retries_run_out_is_recorded(tmp_path):
    with ScriptedLLM(["bad", "good"], fixes=["500", "500", "500"]) as server:
        cfg = tiny_cfg(llm=llm_cfg(server.url, tmp_path / "c", max_retries=2), iterations=1, samples=2,
                       baselines=False, max_generation_retries=0)
        run(cfg, tmp_path / "run")
        n_requests = len(server.requests)
    assert n_requests == 5  # 2 first answers, the regeneration and its 2 retries
    cands = _candidates(tmp_path / "run")
    assert sorted(c["status"] for c in cands) == ["provider_failed", "trained"]
    lost = next(c for c in cands if c["status"] == "provider_failed")
    assert lost["meta"]["slot"] == 0
    assert "failed after 2 retries: InternalServerError" in lost["validation"]["reason"]
    calls = _calls(tmp_path / "run")
    assert len(calls) == n_requests
    assert [(c["slot"], c["attempt"], c["retry"]) for c in calls if c["error"]] == [(0, 1, 0), (0, 1, 1), (0, 1, 2)]
    assert _usage(tmp_path / "run")["failed_calls"] == 3
    slot = json.loads((tmp_path / "run" / "llm" / "gen_00" / "slot_00.json").read_text())
    assert slot["attempts"][-1]["provider_failed"] is True


def test_a_generation_whose_every_sample_failed_at_the_provider_says_so(tmp_path):
    # one n=2 request for both first answers, refused with 500 on the first try and the retry
    with ScriptedLLM(["500", "500"]) as server:
        cfg = tiny_cfg(llm=llm_cfg(server.url, tmp_path / "c", n_mode="n", max_retries=1), iterations=1,
                       samples=2, baselines=False, max_generation_retries=0)
        lines = Lines()
        summary = run(cfg, tmp_path / "run", display=lines.display)
        assert len(server.requests) == 2
    cands = _candidates(tmp_path / "run")
    assert [c["status"] for c in cands] == ["provider_failed", "provider_failed"]
    assert sorted(c["meta"]["slot"] for c in cands) == [0, 1]
    assert summary["status"] == "no_candidate_trained" and summary["llm"]["failed_calls"] == 2
    text = lines.text()
    assert "generation 0: every sample failed at the LLM provider (LLM call to openai/test-model failed " \
           "after 1 retry: InternalServerError" in text
    assert "every candidate failed" not in text
    assert "every LLM sample failed at the provider" in text
    assert sum("provider failed: LLM call" in ln for ln in text.splitlines()) == 2
