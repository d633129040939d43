"""The LLM prompt is fitted to the model's context window by tokens: the feedback loses detail (never
the code to improve on, the task or the contract) until the first request and one fed-back round fit;
with no window known, or a window it fits, the prompt is byte-for-byte what it was."""

from rewardsmith.propose.base import ProposalContext
from rewardsmith.propose.llm import FEEDBACK_TOKENS, TOKEN_MARGIN, LLMProposer
from rewardsmith.propose.llm_client import LLMSettings
from rewardsmith.records import Candidate, MemberResult, Validation
from rewardsmith.reflect import generation_reflection, reflection_levels
from rewardsmith.tasks import get_task

STEPS = list(range(10))


def _cand(i: int) -> Candidate:
    evals = {"episodes": 16, "terminated_frac": 0.25, "length_mean": 400.0, "length_terminated_mean": 120.0,
             "fields": {"theta": {"min": -0.2, "mean": 0.0, "max": 0.2}}, "action_abs_mean": 0.5}
    m = MemberResult(seed=0, ok=True, fitness=float(i), checkpoints=[1000 * (s + 1) for s in STEPS],
                     fitness_curve=[float(i + s) for s in STEPS], length_curve=[100.0] * 10,
                     reward_curve=[1.0 + s for s in STEPS],
                     component_curves={f"c{j}": [float(j + s + i) for s in STEPS] for j in range(6)}, eval=evals)
    src = ("import jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n"
           f"    r = 1.0 - {i} * jnp.abs(next_state.theta)\n    return r, {{'upright': r}}\n")
    return Candidate(id=f"g00-{i:04d}", generation=0, source=src, origin="llm:openai/m", members=[m],
                     fitness=float(i), fitness_std=0.0, status="trained",
                     validation=Validation(ok=True, stage="passed"))


def _setup(tmp_path, **over):
    s = LLMSettings.from_cfg({"provider": "openai_compatible", "model": "some-unmapped-model",
                              "api_base": "http://127.0.0.1:9/v1", "cache": "off", **over})
    prop = LLMProposer(s, tmp_path / "run")
    cands = [_cand(i) for i in range(12)]
    levels = reflection_levels(cands, cands[-1], termination="failure")
    ctx = ProposalContext(task=get_task("cartpole"), generation=1, k=2, history=cands, reflection=levels[0],
                          reflection_shorter=levels[1:])
    return prop, ctx, levels


def test_levels_lose_detail_and_the_first_is_the_reflection():
    cands = [_cand(i) for i in range(12)]
    levels = reflection_levels(cands, cands[-1], termination="failure")
    assert levels[0] == generation_reflection(cands, cands[-1], termination="failure")
    assert len(levels) >= 3
    assert all(len(a) > len(b) for a, b in zip(levels, levels[1:]))
    assert all("g00-0011" in t for t in levels)  # the best is named at every level
    tight = reflection_levels(cands, cands[-1], termination="failure", max_chars=2500)
    assert all(len(t) <= 2500 for t in tight) and tight[0] == levels[len(levels) - len(tight)]


def test_no_window_known_leaves_the_prompt_as_it_was(tmp_path):
    prop, ctx, levels = _setup(tmp_path)
    assert prop.window() is None and prop.prompt_budget() is None
    msgs = prop.messages(ctx)
    assert levels[0] in msgs[-1]["content"] and prop.prompt_fit == {}
    wide, ctx2, _ = _setup(tmp_path, context_tokens=1_000_000)
    assert wide.messages(ctx2) == msgs  # a window it fits: the same bytes
    assert wide.prompt_fit["reflection_level"] == 0 and not wide.prompt_fit["cut"]


def test_a_small_window_gets_a_shorter_reflection_that_fits(tmp_path):
    prop0, ctx0, levels = _setup(tmp_path)
    full = prop0.client.count_tokens(prop0.messages(ctx0))
    answer = 640
    # a window that holds the prompt with the least detailed feedback, not with the full one
    window = int((full + answer + answer + FEEDBACK_TOKENS) / TOKEN_MARGIN) - 600
    prop, ctx, _ = _setup(tmp_path, context_tokens=window, max_tokens_per_call=answer)
    msgs = prop.messages(ctx)
    fit = prop.prompt_fit
    assert prop.client.count_tokens(msgs) <= prop.prompt_budget() == fit["budget"] < full
    assert fit["prompt_tokens"] == prop.client.count_tokens(msgs) and 0 < fit["reflection_level"]
    assert levels[fit["reflection_level"]] in msgs[-1]["content"] and not fit["cut"]
    # the task, the contract and the code to improve on are never what gives way
    assert msgs[:3] == prop0.messages(ctx0)[:3] and "g00-0011" in msgs[-1]["content"]
    assert "- 11 * jnp.abs" in msgs[2]["content"]


def test_a_window_too_small_for_any_level_cuts_the_tail_and_says_so(tmp_path):
    prop0, ctx0, levels = _setup(tmp_path)
    ctx0.reflection, ctx0.reflection_shorter = "", []
    head = prop0.client.count_tokens(prop0.messages(ctx0))  # the prompt with empty statistics
    window = int((head + 60 + 640 + 640 + FEEDBACK_TOKENS) / TOKEN_MARGIN) + 2
    prop, ctx, _ = _setup(tmp_path, context_tokens=window, max_tokens_per_call=640)
    msgs = prop.messages(ctx)
    assert prop.prompt_fit["cut"] and prop.client.count_tokens(msgs) <= prop.prompt_budget()
    text = msgs[-1]["content"]
    assert "left out to fit the model's context window" in text
    assert "g00-0011" in text and "g00-0000" not in text  # the best first, the tail left out


def test_a_later_attempt_that_would_overflow_drops_the_earlier_rounds(tmp_path):
    prop, ctx, _ = _setup(tmp_path, context_tokens=3000, max_tokens_per_call=640)
    base = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    long_answer = {"role": "assistant", "content": "x = 1\n" * 900}
    error = {"role": "user", "content": "fix it"}
    short = base + [{"role": "assistant", "content": "y"}, error]
    assert prop.fit_conversation(short, 2) == short
    grown = base + [long_answer, error, {"role": "assistant", "content": "second"}, error]
    assert prop.fit_conversation(grown, 2) == base + grown[-2:]
    assert prop.fit_conversation(grown, 2) is not grown and len(grown) == 6  # the record keeps them all


def test_llm_local_reads_its_window_from_the_server_context(tmp_path):
    s = LLMSettings.from_cfg({"provider": "local", "api_base": "http://127.0.0.1:9/v1", "context": 4096})
    assert s.context_window() == 4096
    assert LLMSettings.from_cfg({"provider": "local", "api_base": "http://127.0.0.1:9/v1",
                                 "context_tokens": 2048}).context_window() == 2048
    assert LLMSettings.from_cfg({"provider": "openai", "model": "gpt-4o"}).context_window() >= 100_000


def test_an_answer_that_repeats_earlier_code_is_fed_back_and_a_repeat_left_is_recorded(tmp_path, monkeypatch):
    """A small model copies the code it was shown (seen: all 4 generation-1 answers of a
    mountain_car_continuous run, byte for byte): the repeat is fed back like an error and the next
    answer is used; a sample that still repeats it becomes a rejected record naming the earlier
    candidate, never a second training of the same code."""
    from rewardsmith.evolve.loop import Search

    prop, ctx, _ = _setup(tmp_path, trace_feedback=False, max_attempts=2)
    shown = ctx.history[-1].source
    new = shown.replace("1.0 - 11", "2.0 - 11")
    answers = {0: [f"```python\n{shown}```", f"```python\n{new}```"],
               1: [f"```python\n# the same, commented\n{shown}\n```", f"```python\n{shown}```"]}
    sent = []

    def complete(messages, samples, **kw):
        sent.append((samples[0], messages[-1]["content"]))
        return [answers[samples[0]].pop(0)]

    monkeypatch.setattr(prop.client, "complete", complete)
    monkeypatch.setattr(prop.client, "supports_n", lambda: False)
    props = prop.propose(ctx)
    assert props[0].source.strip() == new.strip()
    errors = [a["error"] for a in props[0].meta["attempts"]]
    assert "candidate g00-0011 (generation 0, task fitness 11) unchanged" in errors[0] and errors[1] == ""
    fed_back = [text for slot, text in sent if slot == 0][-1]
    assert "unchanged" in fed_back
    # sample 1 repeated it twice (comments do not make it new): its last code goes on, and the loop
    # records it as a duplicate instead of training it again
    assert [bool(a["error"]) for a in props[1].meta["attempts"]] == [True, True]

    class _State:
        history = ctx.history

    search = Search.__new__(Search)
    search.state, search.proposer = _State(), prop
    cands = search.new_candidates(1, props)
    assert [c.status for c in cands] == ["proposed", "rejected"]
    assert cands[1].validation.stage == "duplicate" and "g00-0011" in cands[1].validation.reason
