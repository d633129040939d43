"""LLM calls through litellm: lazy import, explicit timeout, retries with backoff, our own cache,
token and cost accounting, and an optional budget."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rewardsmith.errors import UserError
from rewardsmith.propose.cache import ResponseCache, cache_key

# provider preset -> (litellm prefix, needs an api key by default, default api_base)
PROVIDERS = {
    "openai": ("openai", True, None),
    "anthropic": ("anthropic", True, None),
    "ollama": ("ollama", False, "http://localhost:11434"),
    "vllm": ("hosted_vllm", False, "http://localhost:8000/v1"),
    "openai_compatible": ("openai", False, None),
    # a llama.cpp server: started for the run from llm.model_path, or a running one at llm.api_base
    "local": ("openai", False, None),
}
# llm=local's settings where they differ from the dataclass defaults (conf/llm/local.yaml has the same)
LOCAL_DEFAULTS = {"model": "local", "max_tokens_per_call": 640, "stop": ["\n```\n"], "seed_requests": True,
                  "timeout_s": 300.0, "max_retries": 2, "concurrency": 1, "n_mode": "fanout"}
_LOCAL_PROVIDERS = ("ollama", "vllm", "openai_compatible", "local")
_RETRYABLE_NAMES = {"RateLimitError", "Timeout", "APITimeoutError", "APIConnectionError", "InternalServerError",
                    "ServiceUnavailableError", "BadGatewayError", "TimeoutError"}
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
_TIMEOUT_NAMES = {"Timeout", "APITimeoutError", "TimeoutError"}


class LLMError(UserError):
    """The provider refused or kept failing; one line naming what went wrong."""


class BudgetExhausted(Exception):
    pass


class CacheMiss(LLMError):
    pass


@dataclasses.dataclass
class LLMSettings:
    provider: str
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 1.0
    max_tokens_per_call: int = 2048
    timeout_s: float = 120.0
    max_retries: int = 4
    retry_backoff_s: float = 1.0
    concurrency: int = 4
    n_mode: str = "auto"  # auto | n | fanout
    cache: str = "readwrite"
    cache_dir: str | None = None
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_attempts: int = 3
    prompts_dir: str | None = None
    # stop generating at these strings (llm=local: the line that closes the code block)
    stop: list[str] | None = None
    # every request carries a seed drawn from the run's seed, generation, retry, sample and attempt
    seed_requests: bool = False
    # mechanical repairs of near-miss code (rewardsmith/propose/repair.py) before the gate
    repair: bool = True
    # each answer that passes the gate is also traced (keyless, limited process); a failure is fed back
    trace_feedback: bool = True
    # llm=local: the GGUF file to serve (a server is started for the run) and how
    model_path: str | None = None
    threads: int = 1
    server_python: str | None = None
    context: int = 8192
    # the model's context window in tokens, which the prompt and the longest answer must fit: the
    # reflection is shortened to fit it. None: llm=local's ``context``, else litellm's model map where it
    # knows the model, else no bound beyond ``reflection_max_chars``
    context_tokens: int | None = None
    gpu_layers: int | str = "auto"
    server_start_timeout_s: float = 300.0

    @classmethod
    def from_cfg(cls, cfg: dict) -> "LLMSettings":
        cfg = {k: v for k, v in dict(cfg).items() if v is not None and v != "???"}
        provider = cfg.get("provider")
        if provider not in PROVIDERS:
            raise UserError(f"unknown llm provider {provider!r}; available: offline, {', '.join(PROVIDERS)}")
        if provider == "local":
            for k, v in LOCAL_DEFAULTS.items():  # conf/llm/local.yaml's, for settings built without it
                cfg.setdefault(k, v)
        if not cfg.get("model"):
            raise UserError(f"llm={provider} needs a model: add llm.model=<name>")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(cfg) - names
        if unknown:
            raise UserError(f"unknown llm settings: {sorted(unknown)}")
        s = cls(**cfg)
        if s.n_mode not in ("auto", "n", "fanout"):
            raise UserError(f"llm.n_mode must be auto, n or fanout; got {s.n_mode!r}")
        if s.cache not in ("readwrite", "replay", "off"):
            raise UserError(f"llm.cache must be readwrite, replay or off; got {s.cache!r}")
        if s.stop is not None:
            s.stop = [str(x) for x in (s.stop if isinstance(s.stop, (list, tuple)) else [s.stop])] or None
        if provider == "local" and not (s.model_path or s.api_base):
            raise UserError("llm=local needs llm.model_path=<a GGUF file> (a server is started for the run) "
                            "or llm.api_base=<url of a running llama.cpp server>")
        if s.api_base is None:
            s.api_base = PROVIDERS[provider][2]
        if provider == "openai_compatible" and not s.api_base:
            raise UserError("llm=openai_compatible needs llm.api_base=<url of the server>")
        return s

    def context_window(self) -> int | None:
        """The context window in tokens (see ``context_tokens``); None where it is not known."""
        if self.context_tokens:
            return int(self.context_tokens)
        if self.provider == "local":
            return int(self.context)
        try:
            info = _litellm().get_model_info(self.model_id)
            return int(info.get("max_input_tokens") or info.get("max_tokens") or 0) or None
        except Exception:  # noqa: BLE001 - a model litellm does not map
            return None

    @property
    def model_id(self) -> str:
        prefix = PROVIDERS[self.provider][0]
        return self.model if self.model.startswith(prefix + "/") else f"{prefix}/{self.model}"


@dataclasses.dataclass
class CallRecord:
    """One request sent to the provider (or one answer taken from the cache): ``llm/calls.json`` holds
    every one, those that timed out or failed included, with the seconds each took."""

    generation: int
    slot: int
    attempt: int
    n: int
    cached: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None  # None: unknown (e.g. a local model without a price)
    seconds: float
    # records from before every request had its own: the failed tries folded into this one (0 now)
    retries: int = 0
    retry: int = 0  # which try of its call this request was: 0 the first, k the k-th retry
    error: str = ""  # '' when answered; else why this request failed, one line


LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_log_files: dict[str, logging.Handler] = {}


def _litellm(log_file: Path | None = None):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map
    try:
        import litellm
    except ImportError:
        raise UserError("the LLM proposer needs litellm: pip install 'rewardsmith[llm]'") from None

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    route_litellm_logs(log_file)
    return litellm


def route_litellm_logs(log_file: Path | None) -> None:
    """litellm's log lines go to ``log_file`` (the run's ``llm/litellm.log``) only: its own console
    handler is removed and nothing reaches the root logger (hydra's console), so a call is not
    printed twice and the console keeps to rewardsmith's own lines."""
    for name in LITELLM_LOGGERS:
        lg = logging.getLogger(name)
        lg.propagate = False
        for h in list(lg.handlers):
            # the console handler litellm adds on import (a StreamHandler subclass), not our file
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
    if log_file is None or str(log_file) in _log_files:
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for old in _log_files.values():  # one run at a time per process: the newest run's file
        for name in LITELLM_LOGGERS:
            logging.getLogger(name).removeHandler(old)
        old.close()
    _log_files.clear()
    _log_files[str(log_file)] = handler
    for name in LITELLM_LOGGERS:
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)


class LLMClient:
    def __init__(self, settings: LLMSettings, env: dict[str, str] | None = None, log_file: Path | None = None):
        self.settings = settings
        self.log_file = log_file
        env = dict(os.environ if env is None else env)
        self.api_key = env.get(settings.api_key_env) if settings.api_key_env else None
        self.cache = ResponseCache(settings.cache_dir, settings.cache)
        self.calls: list[CallRecord] = []
        self._lock = threading.Lock()
        self._supports_n: bool | None = None
        # what the cache key names as the server (a server started for the run has a new port each time)
        self.key_base = settings.api_base

    # -- before any work ----------------------------------------------------------------------
    def preflight(self) -> None:
        """Missing key or unreachable server: one clear line, before anything starts."""
        if self.settings.cache == "replay":
            return  # replaying needs neither key nor server
        needs_key = PROVIDERS[self.settings.provider][1]
        if self.settings.api_key_env and not self.api_key and needs_key:
            raise UserError(f"llm={self.settings.provider} needs an API key: set the environment variable "
                            f"{self.settings.api_key_env} (or use llm=offline)")
        if self.settings.api_key_env and not self.api_key and not needs_key and self.settings.provider == "openai_compatible":
            raise UserError(f"llm.api_key_env={self.settings.api_key_env} is set but that environment variable is empty")
        if self.settings.api_base:
            u = urlparse(self.settings.api_base)
            host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
            try:
                with socket.create_connection((host, port), timeout=min(5.0, self.settings.timeout_s)):
                    pass
            except OSError as e:
                raise UserError(f"cannot reach the LLM server at {self.settings.api_base}: {e.strerror or e}") from None

    def supports_n(self) -> bool:
        if self.settings.n_mode != "auto":
            return self.settings.n_mode == "n"
        if self._supports_n is None:
            litellm = _litellm(self.log_file)
            try:
                params = litellm.get_supported_openai_params(model=self.settings.model,
                                                             custom_llm_provider=PROVIDERS[self.settings.provider][0])
            except Exception:  # noqa: BLE001 - unknown model: be conservative
                params = None
            self._supports_n = bool(params) and "n" in params
        return self._supports_n

    # -- accounting ----------------------------------------------------------------------------
    def count_tokens(self, messages: list[dict]) -> int:
        """The prompt's tokens by litellm's counter for this model (its own tokenizer where litellm has
        it, else cl100k: an estimate, which the caller leaves a margin for)."""
        try:
            return int(_litellm(self.log_file).token_counter(model=self.settings.model_id, messages=messages))
        except Exception:  # noqa: BLE001 - no tokenizer: about 3 characters a token for code and English
            return sum(len(str(m.get("content", ""))) // 3 + 4 for m in messages)

    def totals(self, generation: int | None = None) -> dict[str, Any]:
        """Sums over the requests sent (every one: answered, timed out or failed) and the cached answers."""
        with self._lock:
            calls = [c for c in self.calls if generation is None or c.generation == generation]
        live = [c for c in calls if not c.cached]
        answered = [c for c in live if not c.error]
        known = [c.cost_usd for c in answered if c.cost_usd is not None]
        unknown = sum(1 for c in answered if c.cost_usd is None)
        return {
            "calls": len(live) + sum(c.retries for c in live), "cached_calls": len(calls) - len(live),
            "failed_calls": sum(1 for c in live if c.error) + sum(c.retries for c in live),
            "seconds": round(sum(c.seconds for c in live), 3),
            "prompt_tokens": sum(c.prompt_tokens or 0 for c in live),
            "completion_tokens": sum(c.completion_tokens or 0 for c in live),
            "cost_usd": (sum(known) if not unknown else ("unknown" if not known else
                                                         f"{sum(known):.6f} + unknown ({unknown} calls)")),
            "retries": sum(1 for c in live if c.retry) + sum(c.retries for c in live),
            # generated tokens per second of the answered requests (None: nothing answered)
            "tokens_per_s": round(sum(c.completion_tokens or 0 for c in answered)
                                  / max(1e-9, sum(c.seconds for c in answered)), 1) if answered else None,
        }

    def _check_budget(self) -> None:
        t = self.totals()
        if self.settings.max_tokens is not None and t["prompt_tokens"] + t["completion_tokens"] >= self.settings.max_tokens:
            raise BudgetExhausted(f"token budget of {self.settings.max_tokens} reached")
        if self.settings.max_cost_usd is not None:
            spent = sum(c.cost_usd or 0.0 for c in self.calls if not c.cached)
            if spent >= self.settings.max_cost_usd:
                raise BudgetExhausted(f"cost budget of ${self.settings.max_cost_usd} reached")

    # -- calls ---------------------------------------------------------------------------------
    def complete(self, messages: list[dict], samples: list[int], *, generation: int, attempt: int,
                 retry: int = 0, seed: int = 0) -> list[str]:
        """Return one completion text per sample index (n>1 in one call where allowed). ``retry`` (the
        generation's retry) and ``seed`` (the run's) are part of the cache key with ``generation``."""
        params: dict[str, Any] = {"temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens_per_call}
        if self.settings.stop:
            params["stop"] = list(self.settings.stop)
        draw = {"generation": generation, "retry": retry, "seed": seed}
        keys = [cache_key(self.settings.model_id, self.key_base, messages, params, s, draw) for s in samples]
        out: dict[int, str] = {}
        for s, k in zip(samples, keys):
            hit = self.cache.get(k)
            if hit is not None:
                out[s] = hit["content"]
                self._record(CallRecord(generation, s, attempt, 1, True, hit.get("prompt_tokens"),
                                        hit.get("completion_tokens"), hit.get("cost_usd"), 0.0))
        missing = [(s, k) for s, k in zip(samples, keys) if s not in out]
        if missing and self.cache.mode == "replay":
            raise CacheMiss(f"llm.cache=replay but {len(missing)} response(s) are not in the cache at "
                            f"{self.cache.dir}; run with llm.cache=readwrite to call the provider")
        if not missing:
            return [out[s] for s in samples]
        self._check_budget()
        def with_seed(sample: int) -> dict:
            if not self.settings.seed_requests:
                return params
            return {**params, "seed": request_seed(seed, generation, retry, sample, attempt)}

        if len(missing) > 1 and self.supports_n():
            texts, rec = self._call(messages, len(missing), with_seed(missing[0][0]), generation, missing[0][0],
                                    attempt)
            share = _share(rec, len(texts))
            for (s, k), text in zip(missing, texts):
                out[s] = text
                self.cache.put(k, {"content": text, **share})
            if len(texts) < len(missing):  # provider ignored n: fill the rest one by one
                for s, k in missing[len(texts):]:
                    out[s] = self._single(messages, with_seed(s), s, k, generation, attempt)
        else:
            for s, k in missing:
                out[s] = self._single(messages, with_seed(s), s, k, generation, attempt)
        return [out[s] for s in samples]

    def _single(self, messages, params, s, k, generation, attempt) -> str:
        self._check_budget()
        texts, rec = self._call(messages, 1, params, generation, s, attempt)
        self.cache.put(k, {"content": texts[0], **_share(rec, 1)})
        return texts[0]

    def _record(self, rec: CallRecord) -> None:
        with self._lock:
            self.calls.append(rec)

    def _call(self, messages, n, params, generation: int, slot: int, attempt: int) -> tuple[list[str], CallRecord]:
        """Send the request, retrying with backoff; every try is recorded, a failed one with its error.
        Raises LLMError (one line: refused, or timed out / failed after N retries) when it gives up."""
        litellm = _litellm(self.log_file)
        kwargs: dict[str, Any] = {"model": self.settings.model_id, "messages": messages, "timeout": self.settings.timeout_s,
                                  "num_retries": 0, **params}
        if n > 1:
            kwargs["n"] = n
        if self.settings.api_base:
            kwargs["api_base"] = self.settings.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.settings.provider in ("openai_compatible", "vllm", "local"):
            kwargs["api_key"] = "none"  # local servers often need a placeholder
        retries = 0
        while True:
            t0 = time.monotonic()
            try:
                resp = completion(litellm, **kwargs)
                break
            except Exception as e:  # noqa: BLE001
                line = f"{type(e).__name__}: {_one_line(e)}"
                self._record(CallRecord(generation, slot, attempt, n, False, None, None, None,
                                        round(time.monotonic() - t0, 3), retry=retries, error=line))
                if not _retryable(e) or retries >= self.settings.max_retries:
                    raise LLMError(self._give_up(e, retries, line)) from None
                delay = self.settings.retry_backoff_s * (2 ** retries) * (1 + random.random() * 0.25)
                retries += 1
                time.sleep(min(delay, 60.0))
        texts = [(c.message.content or "") for c in resp.choices]
        usage = getattr(resp, "usage", None)
        cost = None
        try:
            cost = float(litellm.completion_cost(completion_response=resp))
            if cost == 0.0 and self.settings.provider in _LOCAL_PROVIDERS:
                cost = None  # no price for a local model: unknown, not free
        except Exception:  # noqa: BLE001 - unmapped model
            cost = None
        rec = CallRecord(generation, slot, attempt, n, False, getattr(usage, "prompt_tokens", None),
                         getattr(usage, "completion_tokens", None), cost, round(time.monotonic() - t0, 3),
                         retry=retries)
        self._record(rec)
        return texts, rec

    def _give_up(self, e: Exception, retries: int, line: str) -> str:
        """The one line a sample's record keeps: refused, timed out or failed after N retries."""
        tries = f"{retries} retr{'y' if retries == 1 else 'ies'}"
        if not _retryable(e):
            return f"LLM call to {self.settings.model_id} refused: {line}"
        if type(e).__name__ in _TIMEOUT_NAMES:
            return f"LLM call to {self.settings.model_id} timed out after {tries} ({self.settings.timeout_s:g} s per try): {line}"
        return f"LLM call to {self.settings.model_id} failed after {tries}: {line}"


def request_seed(run_seed: int, generation: int, retry: int, sample: int, attempt: int) -> int:
    """The seed one request carries: the same draw gives the same seed, any other draw another."""
    import hashlib

    blob = f"{run_seed}/{generation}/{retry}/{sample}/{attempt}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def completion(litellm, **kwargs):
    """The one place a request leaves the process (tests wrap it to count calls)."""
    return litellm.completion(**kwargs)


def _share(rec: CallRecord, n: int) -> dict:
    div = max(1, n)
    return {"prompt_tokens": rec.prompt_tokens, "completion_tokens": (rec.completion_tokens or 0) // div,
            "cost_usd": None if rec.cost_usd is None else rec.cost_usd / div}


def _retryable(e: Exception) -> bool:
    if type(e).__name__ in _RETRYABLE_NAMES:
        return True
    status = getattr(e, "status_code", None)
    return isinstance(status, int) and status in _RETRYABLE_STATUS


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text[:300]
