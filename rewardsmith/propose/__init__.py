"""Proposers write candidate reward programs: an LLM through litellm, or the offline program search."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from rewardsmith.errors import UserError
from rewardsmith.propose.base import Proposal, ProposalContext, Proposer
from rewardsmith.propose.offline import OfflineProposer


def make_proposer(llm_cfg: Mapping[str, Any], run_dir: Path | None = None) -> Proposer:
    provider = (llm_cfg or {}).get("provider", "offline")
    if provider in (None, "", "offline"):
        return OfflineProposer()
    raise UserError(f"unknown llm provider {provider!r}; available: offline")


__all__ = ["OfflineProposer", "Proposal", "ProposalContext", "Proposer", "make_proposer"]
