"""The LLM proposer: prompts from files, K samples per generation, code extraction, and
regeneration with the validation error fed back (bounded attempts per slot)."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rewardsmith.propose.base import Proposal, ProposalContext, Proposer
from rewardsmith.propose.llm_client import BudgetExhausted, LLMClient, LLMError, LLMSettings
from rewardsmith.propose.prompts import PromptSet
from rewardsmith.records import Candidate
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.validate.static import check_source

# the error fed back after an answer, in tokens (the longest hint is about 250)
FEEDBACK_TOKENS = 300
# litellm counts with cl100k where it lacks the model's tokenizer: leave this much of the window unused
TOKEN_MARGIN = 0.9
_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n", re.IGNORECASE)


def extract_code(text: str) -> str | None:
    """The last fenced code block that defines compute_reward (None when there is none). A last block
    left open (the answer stopped at the line that closes it: a stop sequence) counts as closed."""
    text = text or ""
    blocks = [b for b in _BLOCK.findall(text) if "def compute_reward" in b]
    if not blocks and text.count("```") % 2 == 1:
        opens = list(_OPEN.finditer(text))
        if opens and "def compute_reward" in text[opens[-1].end():]:
            blocks = [text[opens[-1].end():]]
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
        self.server = None  # llm=local: the llama.cpp server this run started
        self._checker = None  # trace checks of answers (trace_feedback), a limited process kept for the run
        self._check_lock = threading.Lock()
        self._window: int | None | bool = False  # the model's context window in tokens (False: not read yet)
        self.prompt_fit: dict = {}  # how the last generation's prompt was fitted to the window
        if settings.provider == "local" and settings.model_path and not settings.api_base:
            # the port of a server started for the run changes from run to run; the cache names the file
            self.client.key_base = f"local:{Path(settings.model_path).name}"

    def preflight(self) -> None:
        s = self.settings
        if s.provider == "local" and s.model_path and not s.api_base and s.cache != "replay":
            from rewardsmith.propose.local_server import LocalServer

            log = self.rd.llm_server_log_path if self.rd else None
            if log is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
            self.server = LocalServer(s.model_path, python=s.server_python, threads=s.threads, context=s.context,
                                      gpu_layers=s.gpu_layers, alias=s.model, log_path=log,
                                      start_timeout_s=s.server_start_timeout_s)
            s.api_base = self.client.settings.api_base = self.server.start()
            self.label = f"LLM {s.model_id} via a llama.cpp server ({Path(s.model_path).name}, {s.threads} thread(s)" \
                         + (", GPU" if self.server.gpu_layers else "") + ")"
        self.client.preflight()

    def close(self) -> None:
        """Stop what the run started: the llama.cpp server, the trace checker."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._checker is not None:
            self._checker.close()
            self._checker = None

    # -- vetting one answer ------------------------------------------------------------------------
    def _trace(self, code: str, ctx: ProposalContext) -> str:
        """'' when the code loads and traces on the schema; else the reason. Keyless, limited process."""
        from rewardsmith.contract import MAX_COMPONENTS
        from rewardsmith.isolation.child import scrubbed_env
        from rewardsmith.validate.isolate import Checker, CheckLimits

        with self._check_lock:
            if self._checker is None:
                self._checker = Checker(env=scrubbed_env(), parallel=1)
            v = self._checker.check([("answer", code)], ctx.task.schema.to_json(), MAX_COMPONENTS,
                                    CheckLimits())["answer"]
        return "" if v.ok else v.reason

    def vet(self, code: str, ctx: ProposalContext) -> tuple[str, list[str], str, str]:
        """Gate (and trace) one answer's code, repairing near misses mechanically first.
        Returns (code to use, repairs applied, unified diff of them, error: '' when usable)."""
        from rewardsmith.propose.repair import repair_source

        fields = ctx.task.schema.names
        original, repairs, diffs = code, [], []
        # the gate's violations, and the state read as an array (state[0], x, y = state: that runs, the
        # state being a named tuple, but reads fields by their position, rarely what the code meant)
        problems = [str(v) for v in check_source(code, fields)] or state_misuse(code)
        if problems and self.settings.repair:
            fixed, names, diff = repair_source(code, fields)
            if names and not check_source(fixed, fields) and not state_misuse(fixed):
                code, problems = fixed, []
                repairs += names
                diffs.append(diff)
        if problems:
            return original, [], "", describe_violations(original, problems[:5], fields)
        if not self.settings.trace_feedback:
            return code, repairs, "".join(diffs), ""
        reason = self._trace(code, ctx)
        if reason and self.settings.repair:
            fixed, names, diff = repair_source(code, fields, arrays=True)
            if names and not check_source(fixed, fields) and not self._trace(fixed, ctx):
                code, reason = fixed, ""
                repairs += names
                diffs.append(diff)
        if reason:
            return code, repairs, "".join(diffs), describe_trace_error(code, reason, fields)
        if repairs:
            import difflib

            diff = "".join(difflib.unified_diff(original.splitlines(True), code.splitlines(True), "answer",
                                                "repaired"))
            return code, list(dict.fromkeys(repairs)), diff, ""
        return code, [], "", ""

    def restore(self) -> None:
        """A resumed run: earlier calls count towards usage and the budget."""
        from rewardsmith.propose.llm_client import CallRecord
        from rewardsmith.rundir import read_json

        path = self.rd.llm_calls_path if self.rd else None
        if path is not None and path.is_file():
            self.client.calls = [CallRecord(**c) for c in read_json(path)] + self.client.calls

    # -- prompt ------------------------------------------------------------------------------
    def window(self) -> int | None:
        if self._window is False:
            self._window = self.settings.context_window()
        return self._window or None

    def prompt_budget(self) -> int | None:
        """Tokens the first request's prompt may take (None: no bound known): the context window less
        the longest answer and, where an answer may be fed back, one more answer and its error (a later
        attempt that would not fit drops the earlier rounds, see ``fit_conversation``)."""
        window = self.window()
        if not window:
            return None
        answer = int(self.settings.max_tokens_per_call)
        more = answer + FEEDBACK_TOKENS if self.settings.max_attempts > 1 else 0
        return max(0, int(window * TOKEN_MARGIN) - answer - more)

    def messages(self, ctx: ProposalContext) -> list[dict]:
        """The prompt: system, task and, after generation 0, the code to improve on and the feedback.
        Where the model's context window is known and the feedback would not fit it, the most detailed
        shorter version that fits is sent (``ctx.reflection_shorter``), else the feedback cut by
        paragraphs; ``prompt_fit`` says which."""
        view = ctx.task.prompt_view()
        msgs = [
            {"role": "system", "content": self.prompts.render("system")},
            {"role": "user", "content": self.prompts.render(
                "task", task_name=view["name"], description=view["description"], schema=view["schema"],
                source_excerpt=_source_block(view.get("source_excerpt", "")),
                example=schema_example(ctx.task.schema))},
        ]
        self.prompt_fit = {}
        best = _best(ctx.history, ctx.ranking)
        if ctx.generation > 0 and (ctx.reflection or best is not None):
            if best is not None:
                msgs.append({"role": "assistant", "content": f"```python\n{best.source.strip()}\n```"})

            def feedback(statistics: str) -> dict:
                text = self.prompts.render("reflection", generation=ctx.generation - 1,
                                           statistics=statistics + _elites_text(ctx.elites))
                if ctx.human_feedback:
                    text += "\n\n" + self.prompts.render("human_feedback", feedback=ctx.human_feedback)
                return {"role": "user", "content": text}

            msgs.append(feedback(ctx.reflection))
            budget = self.prompt_budget()
            if budget is not None:
                msgs[-1] = self._fit_feedback(msgs, feedback, [ctx.reflection, *ctx.reflection_shorter], budget)
        elif ctx.human_feedback:
            msgs.append({"role": "user", "content": self.prompts.render("human_feedback",
                                                                         feedback=ctx.human_feedback)})
        return msgs

    def _fit_feedback(self, msgs: list[dict], feedback, versions: list[str], budget: int) -> dict:
        """The first version of the statistics whose prompt fits ``budget`` tokens; else the last one
        cut paragraph by paragraph (the best candidates come first, so the tail goes)."""
        head = msgs[:-1]
        tokens = None
        for level, text in enumerate(versions):
            tokens = self.client.count_tokens(head + [feedback(text)])
            if tokens <= budget:
                self.prompt_fit = {"window": self.window(), "budget": budget, "prompt_tokens": tokens,
                                   "reflection_level": level, "levels": len(versions),
                                   "reflection_chars": len(text), "cut": False}
                return feedback(text)
        parts = versions[-1].split("\n\n")
        while parts:
            parts = parts[:-1]
            text = "\n\n".join(parts + ["[the rest left out to fit the model's context window]"])
            tokens = self.client.count_tokens(head + [feedback(text)])
            if tokens <= budget:
                break
        self.prompt_fit = {"window": self.window(), "budget": budget, "prompt_tokens": tokens,
                           "reflection_level": len(versions) - 1, "levels": len(versions),
                           "reflection_chars": len(text), "cut": True}
        return feedback(text)

    def fit_conversation(self, convo: list[dict], base_len: int) -> list[dict]:
        """What is sent for a later attempt: the whole conversation where it fits the window with one
        more answer, else the prompt and the last answer with its error only."""
        window = self.window()
        if not window or len(convo) <= base_len + 2:
            return convo
        room = int(window * TOKEN_MARGIN) - int(self.settings.max_tokens_per_call)
        if self.client.count_tokens(convo) <= room:
            return convo
        return convo[:base_len] + convo[-2:]

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

        # the code every earlier candidate and every accepted answer of this generation holds, as the
        # parser reads it: an answer that repeats one (a small model copies the code it was shown) is
        # fed back like an error, since training it again would teach nothing new
        earlier = {code_key(c.source): c for c in ctx.history if c.source}
        taken: dict[str, int] = {}
        lock = threading.Lock()

        def repeats(code: str, s: int) -> str:
            key = code_key(code)
            with lock:
                prev = earlier.get(key)
                if prev is not None:
                    fit = f", task fitness {prev.fitness:.4g}" if prev.fitness is not None else ""
                    return (f"this is the code of candidate {prev.id} (generation {prev.generation}{fit}) unchanged: "
                            "training it again teaches nothing new; write a different reward (change a term, a "
                            "weight or a scale, following the feedback)")
                if key in taken and taken[key] != s:
                    return ("this is the same code as another answer of this generation: write a different reward "
                            "(change a term, a weight or a scale)")
                taken[key] = s
            return ""

        def run_slot(s: int) -> Proposal:
            convo = conversations[s]
            if first_error:
                return provider_failed(s, 0, first_error)
            last_code = None
            for attempt in range(self.settings.max_attempts):
                if attempt == 0 and s in first:
                    text = first[s]
                else:
                    try:
                        text = self.client.complete(self.fit_conversation(convo, len(base)), [s],
                                                    generation=ctx.generation, attempt=attempt,
                                                    retry=ctx.attempt, seed=ctx.seed)[0]
                    except BudgetExhausted as e:
                        self.exhausted = str(e)
                        return provider_failed(s, attempt, f"budget reached: {e}")
                    except LLMError as e:  # timed out or failed after its retries, or refused
                        return provider_failed(s, attempt, str(e))
                convo.append({"role": "assistant", "content": text})
                code = extract_code(text)
                repairs: list[str] = []
                diff = ""
                if code is None:
                    error = "the answer has no ```python code block defining compute_reward(state, action, next_state)"
                else:
                    code, repairs, diff, error = self.vet(code, ctx)
                    last_code = code
                    if not error:
                        error = repeats(code, s)
                record = {"attempt": attempt, "error": error}
                if repairs:
                    record["repairs"] = repairs
                attempts[s].append(record)
                if not error:
                    meta = {"slot": s, "attempts": attempts[s], "model": self.model}
                    if repairs:
                        meta["repairs"] = repairs
                        meta["repair_diff"] = diff
                    fixed = f" (after {attempt} error feedback(s))" if attempt else ""
                    return Proposal(source=code, note=f"LLM sample {s}, attempt {attempt + 1}{fixed}"
                                    + (f"; repaired: {', '.join(repairs)}" if repairs else ""), meta=meta)
                convo.append({"role": "user", "content": self.prompts.render("code_error", error=error)})
            # out of attempts: hand the last code to validation anyway so the rejection is recorded
            if last_code is not None:
                return Proposal(source=last_code, note=f"LLM sample {s}: still invalid after "
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
        if self.prompt_fit:
            atomic_write_json(d / "prompt_fit.json", self.prompt_fit)
        atomic_write_json(self.rd.llm_calls_path, [c.__dict__ for c in self.client.calls])

    def usage(self) -> dict:
        return {"model": self.model, **self.client.totals(),
                "per_generation": {g: self.client.totals(g) for g in sorted({c.generation for c in self.client.calls})}}


def code_key(source: str) -> str:
    """What a reward's code says, as Python parses it (comments, blank lines and layout aside)."""
    import ast

    try:
        return ast.dump(ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source.strip()


def _elites_text(elites: list[dict]) -> str:
    """search=archive: rewards whose policies behaved differently from the best's, to draw on too."""
    if not elites:
        return ""
    parts = ["\n\nOther rewards the search keeps because their policies behave differently (the mean of "
             "these quantities over an episode); ideas from them may combine with the best:"]
    for e in elites:
        what = ", ".join(f"{k} {v:g}" for k, v in e["behaviour"].items())
        parts.append(f"{e['id']} (task fitness {e['fitness']:.4g}; {what}):\n```python\n{e['source'].strip()}\n```")
    return "\n".join(parts)


def _best(history: list[Candidate], ranking: list[str] | None = None) -> Candidate | None:
    """The candidate shown as the one to improve on: first in the run's ranking, else the fittest."""
    scored = [c for c in history if c.fitness is not None and not c.origin.startswith("baseline")]
    if ranking:
        by_id = {c.id: c for c in scored}
        for cid in ranking:
            if cid in by_id:
                return by_id[cid]
    return max(scored, key=lambda c: c.fitness) if scored else None


def schema_example(schema) -> str:
    """A worked example in the task's own terms: its fields read as attributes, a different goal (the
    first rewardable field held at the bottom of its typical range, where goals rarely are; the next
    one kept small), never the task's answer. Built from the schema alone."""
    fields = [f for f in schema.fields if f.rewardable] or list(schema.fields)
    if not fields:
        return ""

    def read(f) -> str:
        return f"next_state.{f.name}" + ("" if not f.shape else "[0]")

    def top(f) -> str:
        return f"{f.low:g}" if f.low is not None else "-1.0"

    def scale(f) -> str:
        return f"{max(0.05, 0.1 * f.scale):.3g}"

    a = fields[0]
    lines = ["import jax.numpy as jnp", "", "def compute_reward(state, action, next_state):",
             f"    error = jnp.abs({read(a)} - {top(a)})",
             f"    near = jnp.exp(-error / {scale(a)})"]
    comps = ["near"]
    if len(fields) > 1:
        b = fields[1]
        lines.append(f"    calm = -0.1 * jnp.sum(jnp.square(next_state.{b.name}))")
        comps.append("calm")
    if schema.action.kind == "continuous":
        lines.append("    effort = -0.01 * jnp.sum(jnp.square(action))")
        comps.append("effort")
    lines.append(f"    bonus = jnp.where(error < {scale(a)}, 1.0, 0.0)")
    comps.append("bonus")
    lines.append(f"    total = {' + '.join(comps)}")
    lines.append("    return total, {" + ", ".join(f'"{c}": {c}' for c in comps) + "}")
    goal = f"{a.name} held at {top(a)}" + (f", {fields[1].name} kept small" if len(fields) > 1 else "")
    return (f"\nAn example of the form only, with this task's fields but a different goal ({goal}); it is "
            f"not a reward for this task:\n```python\n" + "\n".join(lines) + "\n```\n")


def _source_block(excerpt: str) -> str:
    """The environment's own source (your own environment's tasks), as the prompt shows it."""
    if not excerpt:
        return ""
    return f"\nThe environment's source (trimmed), for what the state fields mean:\n```python\n{excerpt.rstrip()}\n```\n"


# -- error feedback: the failing line quoted, and what to write instead -------------------------------

_LINE = re.compile(r"^(?:tracing failed: )?line (\d+): |^(\d+):\d+: ")
_HINTS = (
    (re.compile(r"not subscriptable|unpack|not iterable|object is not|has no len|__getitem__|tuple indices|"
                r"not an array", re.I),
     "`state` and `next_state` are not arrays, tuples or dicts: read each field as an attribute, "
     "e.g. `next_state.{field}`"),
    (re.compile(r"Concretization|TracerBool|Abstract tracer|truth value of an array|converted to bool", re.I),
     "the values are traced JAX arrays: no Python `if`, `and`, `or`, `not`, `min()`, `max()` or `float()` on them; "
     "use `jnp.where(cond, a, b)`, `jnp.logical_and(a, b)`, `jnp.minimum(a, b)`, `jnp.maximum(a, b)`"),
    (re.compile(r"has no attribute '(\w+)'|unknown field|no field", re.I),
     "the state has exactly these fields: {fields}"),
    (re.compile(r"unknown name 'n?p'|unknown name 'numpy'|import of 'numpy'|import of 'jnp'|unknown name 'jnp'", re.I),
     "import jax.numpy as jnp at the top and write jnp.<function>"),
    (re.compile(r"unknown name 'math'|unknown name 'pi'", re.I), "write jnp.pi, jnp.cos, jnp.sqrt (jax.numpy)"),
    (re.compile(r"total reward must be a scalar|must be a scalar", re.I),
     "every value must be one number for this one transition: no batch axis; index a vector field or "
     "reduce it with jnp.sum"),
    (re.compile(r"must return \(total_reward, components_dict\)", re.I),
     "end with `return total, {{\"name\": value, ...}}`"),
    (re.compile(r"requires ndarray or scalar arguments, got <class '(list|tuple)'>", re.I),
     "jnp functions take arrays, not Python lists: `jnp.minimum(a, b)` / `jnp.maximum(a, b)` for two values, "
     "or `jnp.min(jnp.array([a, b, c]))`"),
    (re.compile(r"import of 'torch'|torch\.", re.I), "write it with jax.numpy (`jnp`), not PyTorch"),
)


def state_misuse(code: str) -> list[str]:
    """``state[0]``, ``a, b = next_state``, ``for v in state``, ``len(state)``: the state read as an array.
    It is a named tuple, so this would run, reading fields by their position in the schema, which is
    rarely what the code meant (an observation vector's order)."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names = ("state", "next_state")
    out = []

    def is_state(n) -> bool:
        return isinstance(n, ast.Name) and n.id in names

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_state(node.value):
            out.append(f"{node.lineno}:{node.col_offset + 1}: {node.value.id}[...] reads the state as an array; "
                       "it is not an array")
        elif isinstance(node, ast.Assign) and is_state(node.value) \
                and any(isinstance(t, (ast.Tuple, ast.List)) for t in node.targets):
            out.append(f"{node.lineno}:{node.col_offset + 1}: unpacking {node.value.id} reads it as an array; "
                       "it is not an array")
        elif isinstance(node, (ast.For, ast.comprehension)) and is_state(node.iter):
            out.append(f"{getattr(node, 'lineno', getattr(node.iter, 'lineno', 1))}:1: iterating over "
                       f"{node.iter.id} reads it as an array; it is not an array")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" \
                and node.args and is_state(node.args[0]):
            out.append(f"{node.lineno}:{node.col_offset + 1}: len({node.args[0].id}): it is not an array")
    return out[:3]


def _quote(code: str, lineno: int) -> str:
    lines = code.splitlines()
    if 1 <= lineno <= len(lines) and lines[lineno - 1].strip():
        return f" in `{lines[lineno - 1].strip()[:160]}`"
    return ""


def _hint(message: str, fields: tuple[str, ...]) -> str:
    for pattern, hint in _HINTS:
        if pattern.search(message):
            return hint.format(field=fields[0] if fields else "x", fields=", ".join(fields))
    return ""


def _explain(code: str, message: str, fields: tuple[str, ...]) -> str:
    m = _LINE.match(message)
    lineno = int(m.group(1) or m.group(2)) if m else 0
    hint = _hint(message, fields)
    return f"{message}{_quote(code, lineno)}" + (f". Fix: {hint}" if hint else "")


def describe_violations(code: str, violations: list[str], fields: tuple[str, ...] = ()) -> str:
    """The gate's violations, each with the line it is on and, where known, what to write instead."""
    return "; ".join(_explain(code, v, fields) for v in violations)


def describe_trace_error(code: str, reason: str, fields: tuple[str, ...]) -> str:
    """A trace failure (the code was run on one transition with the schema's fields), quoted and explained."""
    return "running it on one transition failed: " + _explain(code, reason, fields)
