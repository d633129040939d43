"""logger=tensorboard: a CartPole run's curves written as TensorBoard event files, read back."""

from __future__ import annotations

import json
import struct

import pytest

from conftest import tiny_cfg
from rewardsmith.errors import UserError
from rewardsmith.evolve import run


def read_events(logdir):
    """Every scalar and text summary in the event files beneath ``logdir`` (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    scalars, texts = {}, {}
    files = sorted(logdir.glob("events.out.tfevents.*"))
    for path in files:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in ev.summary.value:
                if v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "text":
                    texts[v.tag] = v.tensor.string_val[0].decode()
                else:
                    scalars.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return files, scalars, texts


def test_a_cartpole_run_writes_tensorboard_curves_named_by_run_ids(tmp_path):
    summary = run(tiny_cfg(logger="tensorboard", iterations=2, final_eval=True, eval_seeds=2), tmp_path)
    files, scalars, texts = read_events(tmp_path / "tensorboard")
    assert files
    # per generation: the best of the generation and the best so far, by generation index
    gens = [json.loads(p.read_text()) for p in sorted((tmp_path / "generations").glob("gen_*/generation*.json"))]
    assert [s for s, _ in scalars["search/generation_best"]] == [0, 1]
    assert [v for _, v in scalars["search/generation_best"]] == pytest.approx([g["best_fitness"] for g in gens])
    # per candidate: training curves under the candidate's id, against env steps, for every seed
    cand = json.loads(next((tmp_path / "generations" / "gen_00" / "candidates").glob("*/candidate.json")).read_text())
    m = cand["members"][0]
    tag = f"{cand['id']}/fitness/seed{m['seed']}"
    assert tag in scalars
    assert [s for s, _ in scalars[tag]] == [s for s, f in zip(m["checkpoints"], m["fitness_curve"]) if f is not None]
    assert [v for _, v in scalars[tag]] == pytest.approx([f for f in m["fitness_curve"] if f is not None], rel=1e-5)
    assert any(t.startswith(f"{cand['id']}/component/") for t in scalars)
    assert any(t.startswith("baseline-human/fitness/") for t in scalars)
    # the final table
    final = summary["final_evaluation"]
    assert scalars["evaluation/best"][0][1] == pytest.approx(final["best"]["fitness_mean"], rel=1e-5)
    assert final["best"]["id"] in texts["evaluation/text_summary"]
    # the viewer the README names reads the same curves (TensorBoard's own event loader)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("search/generation_best")] == pytest.approx(
        [v for _, v in scalars["search/generation_best"]])
    assert [e.step for e in acc.Scalars(tag)] == [s for s, _ in scalars[tag]]


def read_wandb(run_root):
    """History rows and summary of the offline W&B run beneath ``run_root`` (its .wandb record log)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    files = sorted(run_root.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    ds = datastore.DataStore()
    ds.open_for_scan(str(files[0]))
    history, summary, config = [], {}, {}
    while (data := ds.scan_data()) is not None:
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        key = lambda i: i.key or "/".join(i.nested_key)  # noqa: E731
        if kind == "history":
            history.append({key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind in ("config", "run"):
            cfg = rec.config if kind == "config" else rec.run.config
            config.update({key(i): json.loads(i.value_json) for i in cfg.update})
    return history, summary, config


def test_a_cartpole_run_writes_an_offline_wandb_run_named_by_run_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    summary = run(tiny_cfg(logger="wandb", iterations=2, final_eval=True, eval_seeds=2,
                           wandb={"project": "rs-test", "mode": "offline"}), tmp_path)
    history, wsummary, config = read_wandb(tmp_path)
    # per generation, against search/generation
    gens = [json.loads(p.read_text()) for p in sorted((tmp_path / "generations").glob("gen_*/generation*.json"))]
    per_gen = [h for h in history if "search/generation" in h]
    assert [h["search/generation"] for h in per_gen] == [0, 1]
    assert [h["search/generation_best"] for h in per_gen] == pytest.approx([g["best_fitness"] for g in gens])
    # per candidate, against its own env steps
    cand = json.loads(next((tmp_path / "generations" / "gen_00" / "candidates").glob("*/candidate.json")).read_text())
    m = cand["members"][0]
    tag, x = f"{cand['id']}/fitness/seed{m['seed']}", f"{cand['id']}/env_steps"
    points = [(h[x], h[tag]) for h in history if tag in h]
    want = [(s, f) for s, f in zip(m["checkpoints"], m["fitness_curve"]) if f is not None]
    assert [s for s, _ in points] == [s for s, _ in want]
    assert [v for _, v in points] == pytest.approx([f for _, f in want], rel=1e-5)
    assert any(k.startswith(f"{cand['id']}/component/") for h in history for k in h)
    assert any(k.startswith("baseline-human/fitness/") for h in history for k in h)
    # the final evaluation: numbers in the summary, and a table
    final = summary["final_evaluation"]
    assert wsummary["evaluation/best"] == pytest.approx(final["best"]["fitness_mean"], rel=1e-5)
    assert wsummary["best_candidate_id"] == summary["best_candidate_id"]
    assert any(k.startswith("evaluation/table") for h in history for k in h)
    assert config.get("samples") == 3 and config.get("logger") == "wandb"


def test_unknown_logger_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="logger must be none, tensorboard or wandb"):
        run(tiny_cfg(logger="mlflow"), tmp_path / "run")
    with pytest.raises(UserError, match="wandb.mode must be offline, online or disabled"):
        run(tiny_cfg(logger="wandb", wandb={"mode": "cloud"}), tmp_path / "run")
