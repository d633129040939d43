from rewardsmith.records import Candidate, MemberResult, Validation
from rewardsmith.reflect import generation_reflection
from rewardsmith.reflect.diagnostics import diagnose

STEPS = list(range(10))


def test_flat_component_is_reported():
    d = diagnose({"alive": [1.0] * 10, "upright": [0.1 * i for i in STEPS]},
                 [1 + 0.1 * i for i in STEPS], [10.0 * i for i in STEPS])
    assert d.flat == ["alive"]
    assert d.correlations["alive"] is None and d.correlations["upright"] > 0.99
    assert not d.hacking


def test_dominating_component_is_reported():
    d = diagnose({"big": [100.0 + i for i in STEPS], "small": [0.5 + 0.01 * i for i in STEPS]},
                 [100.5 + i for i in STEPS], [float(i) for i in STEPS])
    assert d.dominant == "big" and d.shares["big"] > 0.99
    d2 = diagnose({"a": [1.0 + i for i in STEPS], "b": [1.5 + i for i in STEPS]}, STEPS, STEPS)
    assert d2.dominant is None


def test_reward_rising_while_fitness_falls_is_flagged_as_hacking():
    reward = [1.0 + i for i in STEPS]
    falling = [100.0 - 5 * i for i in STEPS]
    d = diagnose({"speed": reward}, reward, falling)
    assert d.hacking and "falls" in d.hacking_reason
    assert d.correlations["speed"] < -0.99
    flat = diagnose({"speed": reward}, reward, [50.0] * 10)
    assert flat.hacking and "stays flat" in flat.hacking_reason
    honest = diagnose({"speed": reward}, reward, [10.0 * i for i in STEPS])
    assert not honest.hacking
    assert any("REWARD HACKING" in ln for ln in d.lines())


def _cand(cid, fitness, comps, reward, fit_curve, evals=None):
    m = MemberResult(seed=0, ok=True, fitness=fitness, checkpoints=[1000 * (i + 1) for i in STEPS],
                     fitness_curve=fit_curve, length_curve=[100.0] * 10, reward_curve=reward,
                     component_curves=comps, eval=evals or {})
    return Candidate(id=cid, generation=0, source="", origin="offline", members=[m], fitness=fitness,
                     fitness_std=0.0, status="trained", validation=Validation(ok=True, stage="passed"))


def test_reflection_contains_tables_diagnostics_and_trajectories_within_budget():
    evals = {"episodes": 16, "terminated_frac": 0.25, "length_mean": 400.0, "length_terminated_mean": 120.0,
             "fields": {"x": {"min": -1.0, "mean": 0.1, "max": 2.0}}, "action_abs_mean": 0.5}
    hacker = _cand("g00-aaaa", 20.0, {"speed": [1.0 + i for i in STEPS]}, [1.0 + i for i in STEPS],
                   [100.0 - 5 * i for i in STEPS], evals)
    good = _cand("g00-bbbb", 400.0, {"upright": [0.1 * i for i in STEPS], "alive": [1.0] * 10},
                 [1 + 0.1 * i for i in STEPS], [40.0 * i for i in STEPS], evals)
    rejected = Candidate(id="g00-cccc", generation=0, source="", origin="offline", status="rejected",
                         validation=Validation(ok=False, stage="static", reason="3:5: 'eval' is not allowed"))
    text = generation_reflection([hacker, good, rejected], good, termination="failure")
    assert text.index("g00-bbbb") < text.index("g00-aaaa")  # ranked by fitness
    assert "component speed: [1, 2, 3" in text and "max 10, mean 5.5, min 1" in text
    assert "task fitness" in text and "episode length" in text
    assert "REWARD HACKING SUSPECTED" in text
    assert "flat components (the policy does not change them): alive" in text
    assert "ended by failure 4, reached the time limit 12" in text
    assert "x [-1, 2] mean 0.1" in text and "mean |action| 0.5" in text
    assert "rejected at static: 3:5: 'eval' is not allowed" in text
    success = generation_reflection([good], good, termination="success")
    assert "reached the goal 4" in success and "mean time to success 120.0 steps" in success
    # a tight budget summarises (fewer checkpoints, fewer full tables) instead of cutting mid-table
    many = [_cand(f"g00-{i:04d}", float(i), {f"c{j}": [float(j + i)] * 10 for j in range(6)},
                  [1.0] * 10, [float(i)] * 10, evals) for i in range(12)]
    full = generation_reflection(many, many[-1], termination="failure")
    short = generation_reflection(many, many[-1], termination="failure", max_chars=2500)
    assert len(short) <= 2500 < len(full)
    assert "g00-0011" in short and "g00-0000: task fitness 0" in short  # every candidate still named
