"""Proposers write candidate reward programs: an LLM through litellm, or the offline program search."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from rewardsmith.propose.base import Proposal, ProposalContext, Proposer
from rewardsmith.propose.offline import OfflineProposer


def make_proposer(llm_cfg: Mapping[str, Any], run_dir: Path | None = None) -> Proposer:
    provider = (llm_cfg or {}).get("provider", "offline")
    if provider in (None, "", "offline"):
        return OfflineProposer()
    from rewardsmith.propose.llm import LLMProposer
    from rewardsmith.propose.llm_client import LLMSettings

    proposer = LLMProposer(LLMSettings.from_cfg(dict(llm_cfg)), run_dir=run_dir)
    proposer.preflight()
    return proposer


__all__ = ["OfflineProposer", "Proposal", "ProposalContext", "Proposer", "make_proposer"]
