"""The LLM proposer: prompts from files, K samples per generation, code extraction, and
regeneration with the validation error fed back (bounded attempts per slot)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rewardsmith.propose.base import Proposal, ProposalContext, Proposer
from rewardsmith.propose.llm_client import BudgetExhausted, LLMClient, LLMError, LLMSettings
from rewardsmith.propose.prompts import PromptSet
from rewardsmith.records import Candidate
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.validate.static import check_source

_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str | None:
    """The last fenced code block that defines compute_reward (None when there is none)."""
    blocks = [b for b in _BLOCK.findall(text or "") if "def compute_reward" in b]
    return blocks[-1].strip() + "\n" if blocks else None


class LLMProposer(Proposer):
    def __init__(self, settings: LLMSettings, run_dir: Path | None = None):
        self.settings = settings
        # litellm's own log lines: the run's llm/litellm.log only, never the console
        self.rd = RunDir(run_dir, create=False) if run_dir else None
        self.client = LLMClient(settings, log_file=self.rd.llm_log_path if self.rd else None)
        self.prompts = PromptSet(settings.prompts_dir)
        self.model = settings.model_id
        self.label = f"LLM {settings.model_id} via litellm"
        self.origin = f"llm:{settings.model_id}"
        self.exhausted = ""

    def preflight(self) -> None:
        self.client.preflight()

    def restore(self) -> None:
        """A resumed run: earlier calls count towards usage and the budget."""
        from rewardsmith.propose.llm_client import CallRecord
        from rewardsmith.rundir import read_json

        path = self.rd.llm_calls_path if self.rd else None
        if path is not None and path.is_file():
            self.client.calls = [CallRecord(**c) for c in read_json(path)] + self.client.calls

    # -- prompt ------------------------------------------------------------------------------
    def messages(self, ctx: ProposalContext) -> list[dict]:
        view = ctx.task.prompt_view()
        msgs = [
            {"role": "system", "content": self.prompts.render("system")},
            {"role": "user", "content": self.prompts.render(
                "task", task_name=view["name"], description=view["description"], schema=view["schema"],
                source_excerpt=_source_block(view.get("source_excerpt", "")))},
        ]
        best = _best(ctx.history, ctx.ranking)
        if ctx.generation > 0 and (ctx.reflection or best is not None):
            if best is not None:
                msgs.append({"role": "assistant", "content": f"```python\n{best.source.strip()}\n```"})
            feedback = self.prompts.render("reflection", generation=ctx.generation - 1, statistics=ctx.reflection)
            if ctx.human_feedback:
                feedback += "\n\n" + self.prompts.render("human_feedback", feedback=ctx.human_feedback)
            msgs.append({"role": "user", "content": feedback})
        elif ctx.human_feedback:
            msgs.append({"role": "user", "content": self.prompts.render("human_feedback",
                                                                         feedback=ctx.human_feedback)})
        return msgs

    # -- proposing -----------------------------------------------------------------------------
    def propose(self, ctx: ProposalContext) -> list[Proposal]:
        """One proposal per sample, whatever became of it: code for the gate (valid, or still invalid
        after the last attempt), no code (``error``), or a provider failure (``provider_error``: the
        request timed out or failed after its retries, was refused, or the budget ran out). Only a
        budget already spent before this generation sent anything gives [] (proposing stops)."""
        base = self.messages(ctx)
        slots = list(range(ctx.k))
        conversations = {s: list(base) for s in slots}
        attempts: dict[int, list[dict]] = {s: [] for s in slots}
        first: dict[int, str] = {}
        first_error = ""  # the one n=K request for every first answer failed: why
        sent_before = len(self.client.calls)
        try:
            texts = self.client.complete(base, slots, generation=ctx.generation, attempt=0, retry=ctx.attempt,
                                         seed=ctx.seed) \
                if self.client.supports_n() or self.client.cache.mode == "replay" else None
            if texts is not None:
                first = dict(zip(slots, texts))
        except BudgetExhausted as e:
            self.exhausted = str(e)
            self._save(ctx, conversations, attempts)
            return []
        except LLMError as e:
            first_error = str(e)

        def provider_failed(s: int, attempt: int, why: str) -> Proposal:
            # the last answer's code (if any) stays with the record; it was not what ended the sample
            attempts[s].append({"attempt": attempt, "error": why, "provider_failed": True})
            answers = [m["content"] for m in conversations[s][len(base):] if m["role"] == "assistant"]
            code = extract_code(answers[-1]) if answers else None
            meta = {"slot": s, "attempts": attempts[s], "model": self.model}
            if answers:
                meta["last_answer"] = answers[-1][:2000]
            return Proposal(source=code or "", note=f"LLM sample {s}: no answer from the provider at attempt "
                            f"{attempt + 1}", meta=meta, provider_error=why)

        def run_slot(s: int) -> Proposal:
            convo = conversations[s]
            if first_error:
                return provider_failed(s, 0, first_error)
            for attempt in range(self.settings.max_attempts):
                if attempt == 0 and s in first:
                    text = first[s]
                else:
                    try:
                        text = self.client.complete(convo, [s], generation=ctx.generation, attempt=attempt,
                                                    retry=ctx.attempt, seed=ctx.seed)[0]
                    except BudgetExhausted as e:
                        self.exhausted = str(e)
                        return provider_failed(s, attempt, f"budget reached: {e}")
                    except LLMError as e:  # timed out or failed after its retries, or refused
                        return provider_failed(s, attempt, str(e))
                convo.append({"role": "assistant", "content": text})
                code = extract_code(text)
                if code is None:
                    error = "the answer has no ```python code block defining compute_reward(state, action, next_state)"
                else:
                    violations = check_source(code, ctx.task.schema.names)
                    error = "; ".join(str(v) for v in violations[:5]) if violations else ""
                attempts[s].append({"attempt": attempt, "error": error})
                if not error:
                    return Proposal(source=code, note=f"LLM sample {s}, attempt {attempt + 1}",
                                    meta={"slot": s, "attempts": attempts[s], "model": self.model})
                convo.append({"role": "user", "content": self.prompts.render("code_error", error=error)})
            # out of attempts: hand the last code to validation anyway so the rejection is recorded
            code = extract_code(convo[-2]["content"]) if len(convo) >= 2 else None
            if code is not None:
                return Proposal(source=code, note=f"LLM sample {s}: still invalid after "
                                f"{self.settings.max_attempts} attempts", meta={"slot": s, "attempts": attempts[s]})
            # no code in any answer: still a candidate (status no_code) with every attempt's error
            last = convo[-2]["content"] if len(convo) >= 2 else ""
            return Proposal(source="", note=f"LLM sample {s}: no code after {self.settings.max_attempts} attempts",
                            meta={"slot": s, "attempts": attempts[s], "model": self.model,
                                  "last_answer": last[:2000]},
                            error=f"no code block defining compute_reward in {len(attempts[s])} answer(s)")

        results: dict[int, Proposal | None] = {}
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            futures = {s: pool.submit(run_slot, s) for s in slots}
            for s, f in futures.items():
                try:
                    results[s] = f.result()
                except BaseException as e:  # noqa: BLE001 - not the provider (a bug): saved, then re-raised below
                    errors.append(e)
                    results[s] = None
        self._save(ctx, conversations, attempts)
        if errors and not any(results.values()):
            raise errors[0]
        proposals = [p for s in slots if (p := results[s]) is not None]
        if self.exhausted and len(self.client.calls) == sent_before \
                and all(p.provider_error.startswith("budget reached") for p in proposals):
            return []  # the budget was spent before this generation asked for anything: proposing stops
        return proposals

    def _save(self, ctx: ProposalContext, conversations, attempts) -> None:
        if self.rd is None:
            return
        d = self.rd.llm_generation_dir(ctx.generation)
        for s, convo in conversations.items():
            atomic_write_json(d / f"slot_{s:02d}.json", {"messages": convo, "attempts": attempts[s]})
        atomic_write_json(d / "usage.json", self.client.totals(ctx.generation))
        atomic_write_json(self.rd.llm_calls_path, [c.__dict__ for c in self.client.calls])

    def usage(self) -> dict:
        return {"model": self.model, **self.client.totals(),
                "per_generation": {g: self.client.totals(g) for g in sorted({c.generation for c in self.client.calls})}}


def _best(history: list[Candidate], ranking: list[str] | None = None) -> Candidate | None:
    """The candidate shown as the one to improve on: first in the run's ranking, else the fittest."""
    scored = [c for c in history if c.fitness is not None and not c.origin.startswith("baseline")]
    if ranking:
        by_id = {c.id: c for c in scored}
        for cid in ranking:
            if cid in by_id:
                return by_id[cid]
    return max(scored, key=lambda c: c.fitness) if scored else None


def _source_block(excerpt: str) -> str:
    """The environment's own source (your own environment's tasks), as the prompt shows it."""
    if not excerpt:
        return ""
    return f"\nThe environment's source (trimmed), for what the state fields mean:\n```python\n{excerpt.rstrip()}\n```\n"
