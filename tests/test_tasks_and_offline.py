import jax
import jax.numpy as jnp
import pytest

from rewardsmith.propose.base import ProposalContext
from rewardsmith.propose.offline import OfflineProposer
from rewardsmith.records import Candidate, MemberResult
from rewardsmith.tasks import UnknownTaskError, get_task, list_tasks

USER_TASK = """
name: my_cartpole
description: Balance a pole, my way.
env: {backend: gymnax, id: CartPole-v1}
hooks: rewardsmith.tasks.gymnax_env:CARTPOLE
schema:
  fields:
    - {name: x, shape: [], unit: m, range: [-2.4, 2.4], doc: cart position}
    - {name: x_dot, shape: [], unit: m/s, doc: cart velocity}
    - {name: theta, shape: [], unit: rad, kind: angle, doc: pole angle}
    - {name: theta_dot, shape: [], unit: rad/s, doc: pole angular velocity}
    - {name: step, shape: [], unit: steps, kind: count, doc: steps so far}
  action: {kind: discrete, n: 2, doc: left or right}
fitness: {doc: episode length, target: 500}
baselines: {human: human.py, sparse: sparse.py}
ppo: {num_envs: 4}
"""


def test_registry_lists_builtin_tasks_and_rejects_unknown():
    assert {"cartpole", "pendulum", "mountain_car_continuous"} <= set(list_tasks())
    with pytest.raises(UnknownTaskError, match="known tasks: .*cartpole"):
        get_task("nope")


@pytest.mark.parametrize("name", ["cartpole", "pendulum", "mountain_car_continuous"])
def test_task_env_steps_and_schema_view(name):
    task = get_task(name)
    env = task.make_env()
    obs, es = env.reset(jax.random.PRNGKey(0))
    assert obs.shape == (env.obs_size,)
    act = task.schema.action
    a = jnp.int32(1) if act.kind == "discrete" else jnp.zeros(act.shape)
    obs2, es2, r, term, trunc = env.step(jax.random.PRNGKey(1), es, a)
    view = task.schema.make_state(task.hooks.state_view(es2))
    for f in task.schema.fields:
        v = getattr(view, f.name)
        assert v.shape == f.shape and v.dtype == jnp.float32
    assert task.fitness_doc and task.description
    assert "compute_reward" in task.human_reward and "compute_reward" in task.sparse_reward
    # the proposer's view never includes fitness or baselines
    # never the fitness or the baselines; the environment's source only for own environments
    assert set(task.prompt_view()) == {"name", "description", "schema", "source_excerpt"}
    assert task.prompt_view()["source_excerpt"] == ""


def test_user_task_from_yaml(tmp_path, monkeypatch):
    d = tmp_path / "my_cartpole"
    d.mkdir()
    (d / "task.yaml").write_text(USER_TASK)
    cp = get_task("cartpole")
    (d / "human.py").write_text(cp.human_reward)
    (d / "sparse.py").write_text(cp.sparse_reward)
    t = get_task("my_cartpole", d / "task.yaml")
    assert t.name == "my_cartpole" and t.ppo == {"num_envs": 4}
    monkeypatch.setenv("REWARDSMITH_TASK_PATH", str(tmp_path))
    assert "my_cartpole" in list_tasks() and get_task("my_cartpole").description.startswith("Balance")


def _scored(c_source, cid, meta, fitness, comp_curves, fit_curve):
    m = MemberResult(seed=0, ok=True, fitness=fitness, fitness_curve=fit_curve, component_curves=comp_curves)
    return Candidate(id=cid, generation=0, source=c_source, origin="offline", meta=meta, members=[m],
                     fitness=fitness, status="trained")


def test_offline_proposer_evolves_from_the_fittest():
    task = get_task("cartpole")
    prop = OfflineProposer()
    gen0 = prop.propose(ProposalContext(task=task, generation=0, k=6, history=[], seed=3))
    assert len({p.source for p in gen0}) == 6
    assert all("not by an LLM" in p.source for p in gen0)
    history = []
    for i, p in enumerate(gen0):
        names = [t["kind"] + ("_" + t["field"] if t["field"] else "") for t in p.meta["terms"]]
        curves = {n: [float(i), float(i + 1), float(i + 2)] for n in names}
        history.append(_scored(p.source, f"g00-{i}", p.meta, float(100 * i), curves, [1.0, 2.0, 3.0]))
    gen1 = prop.propose(ProposalContext(task=task, generation=1, k=6, history=history, seed=3))
    assert len(gen1) == 6
    children = [p for p in gen1 if p.parents]
    assert len(children) >= 4  # most of a later generation descends from earlier programs
    top_ids = {"g00-5", "g00-4", "g00-3"}
    assert sum(p.parents[0] in top_ids for p in children) >= len(children) // 2
    assert not {p.source for p in gen1} & {p.source for p in gen0}


def test_offline_proposer_reads_single_components_of_small_vectors_and_never_constants():
    """Height is torso_pos[2] and the turn rate torso_ang_vel[2]: terms on one component of a small
    vector, on the whole of a long one (joint angles), and none on dt (constant) or step (count)."""
    import re

    from rewardsmith.validate.static import check_source

    task = get_task("ant_spin")
    prop = OfflineProposer()
    gen0 = prop.propose(ProposalContext(task=task, generation=0, k=24, history=[], seed=1))
    sources = "\n".join(p.source for p in gen0)
    assert re.search(r"next_state\.torso_ang_vel\[[0-2]\]|next_state\.torso_pos\[[0-2]\]", sources)
    assert not re.search(r"next_state\.joint_pos\[", sources)  # 8 joints: read as a whole
    # dt is never rewarded (only divided by: progress per second)
    assert not re.search(r"(?<!/ )next_state\.dt", sources) and "next_state.step" not in sources
    for p in gen0:
        assert check_source(p.source, task.schema.names) == []
    indexed = [t for p in gen0 for t in p.meta["terms"] if t.get("index") is not None]
    assert indexed and all(task.schema.field(t["field"]).shape[0] > t["index"] for t in indexed)
    # a later generation can move a term to another component of its field
    history = [_scored(p.source, f"g00-{i}", p.meta, float(i), {}, [0.0, 1.0, 2.0]) for i, p in enumerate(gen0)]
    notes = [p.note for g in range(1, 6)
             for p in prop.propose(ProposalContext(task=task, generation=g, k=12, history=history, seed=1))]
    assert any(n.startswith("moved ") for n in notes)


def test_offline_rewards_follow_what_termination_means():
    """Where reaching the goal ends the episode no bounded bonus pays per step (ending sooner is never
    worse); where falling ends it a program that can pay less than nothing carries an alive bonus at
    least its penalties' size, and one whose terms are never negative carries none."""
    import numpy as np

    from rewardsmith.validate.load import load_reward_fn

    mcc = get_task("mountain_car_continuous")
    props = OfflineProposer().propose(ProposalContext(task=mcc, generation=0, k=30, history=[], seed=5))
    rng = np.random.default_rng(0)
    checked = 0
    for p in props:
        if any(t["kind"] in ("value", "magnitude", "progress") for t in p.meta["terms"]):
            continue  # unbounded terms: the sign is the search's to find
        fn = load_reward_fn(p.source)
        for _ in range(20):
            s = mcc.schema.make_state({"position": jnp.float32(rng.uniform(-1.2, 0.6)),
                                       "velocity": jnp.float32(rng.uniform(-0.07, 0.07)), "step": jnp.float32(3)})
            total, _ = fn(s, jnp.array([rng.uniform(-1, 1)], jnp.float32), s)
            assert float(total) <= 1e-6, p.source
        checked += 1
    assert checked >= 5
    assert any(t["kind"] == "beyond" for p in props for t in p.meta["terms"])

    # where falling ends the episode no program pays less than nothing on a step: either it carries
    # an alive bonus or all its terms are never negative (then it needs none)
    from rewardsmith.propose.offline import _NEVER_NEGATIVE, Term, respect_termination

    ip = get_task("inverted_pendulum")
    props = OfflineProposer().propose(ProposalContext(task=ip, generation=0, k=12, history=[], seed=5))
    with_alive = 0
    for p in props:
        kinds = [t["kind"] for t in p.meta["terms"]]
        if "alive" in kinds:
            with_alive += 1
            continue
        assert set(kinds) <= set(_NEVER_NEGATIVE), p.source
        fn = load_reward_fn(p.source)
        for _ in range(20):
            s0, s1 = (ip.schema.make_state({f.name: jnp.asarray(rng.uniform(-3, 3, f.shape), jnp.float32)
                                            for f in ip.schema.fields}) for _ in range(2))
            total, _ = fn(s0, jnp.asarray(rng.uniform(-3, 3, ip.schema.action.shape), jnp.float32), s1)
            assert float(total) >= 0.0, p.source
    assert 0 < with_alive < len(props)  # both kinds occur in a first generation

    kept = respect_termination([Term("sq_penalty", "pole_angle", weight=3.0), Term("action_cost", weight=0.5)],
                               "failure")
    assert [(t.kind, t.weight) for t in kept if t.kind == "alive"] == [("alive", 3.5)]
    assert len(respect_termination(kept, "failure")) == len(kept)  # once is enough
    assert respect_termination([Term("sq_penalty", "x")], "none") == [Term("sq_penalty", "x")]
    # an increase alone never pays less than nothing: no alive bonus to outweigh it; with a signed level it gets one
    assert [t.kind for t in respect_termination([Term("rise", "x", index=2)], "failure")] == ["rise"]
    assert [t.kind for t in respect_termination([Term("rise", "x"), Term("value", "y")], "failure")] == [
        "rise", "value", "alive"]


def test_offline_proposer_reads_which_components_the_description_names():
    """The description's words pick the components (the turn rate for a spin, height for a jump,
    the forward axis for running, the fingertip-target offset for reaching), its goal sentence the
    term kinds; a description that names no field leaves the search evenly spread."""
    from rewardsmith.propose.relevance import relevance
    from rewardsmith.tasks.schema import StateSchema

    def lead(name, n=1):
        t = get_task(name)
        return relevance(t.description, t.schema).leads(n)

    assert lead("ant_spin") == [("torso_ang_vel", 2)]
    assert lead("hopper_jump") == [("torso_pos", 2)]
    assert lead("hopper") == [("torso_pos", 0)] and lead("halfcheetah") == [("torso_pos", 0)]
    assert ("tip_to_target", None) in lead("reacher", 2)
    assert relevance(get_task("ant_spin").description, get_task("ant_spin").schema).goal == "more"
    assert relevance(get_task("reacher").description, get_task("reacher").schema).goal == "hold"
    assert relevance(get_task("mountain_car_continuous").description,
                     get_task("mountain_car_continuous").schema).goal == "reach"
    # "as long as possible" is about time (the alive bonus), not more of a field
    assert relevance(get_task("cartpole").description, get_task("cartpole").schema).goal == "hold"

    schema = StateSchema.from_json({"fields": [
        {"name": "a", "shape": [3], "unit": "m", "doc": "x is left, z is up"},
        {"name": "b", "shape": [], "unit": "1", "doc": "something else"}],
        "action": {"kind": "continuous", "shape": [1], "doc": "push"}})
    quiet = relevance("Nothing here matches.", schema)
    assert quiet.top == 0 and quiet.leads(2) == [] and quiet.goal == ""

    # a "more" goal: half the first generation probes the named component alone with each kind
    # that fits (its level, its change, its increase); a "hold" goal: a third probes the top components
    task = get_task("ant_spin")
    for seed in range(4):
        props = OfflineProposer().propose(ProposalContext(task=task, generation=0, k=6, history=[], seed=seed))
        probes = [p for p in props if "names most" in p.note]
        assert [p.meta["terms"][0]["kind"] for p in probes] == ["value", "progress", "rise"]
        for p in probes:
            t = p.meta["terms"][0]
            assert (t["field"], t["index"], t["sign"]) == ("torso_ang_vel", 2, 1.0)
            # alone, plus the alive bonus falling asks for where the term can go below zero
            assert [x["kind"] for x in p.meta["terms"][1:]] == ([] if t["kind"] == "rise" else ["alive"])
        assert props[:3] == probes
    reacher = get_task("reacher")
    reach = OfflineProposer().propose(ProposalContext(task=reacher, generation=0, k=6, history=[], seed=0))
    probed = [(p.meta["terms"][0]["field"], p.meta["terms"][0]["kind"]) for p in reach if "names most" in p.note]
    assert len(probed) == 2 and ("tip_to_target" in {f for f, _ in probed})
    # holding a whole vector at its set point: its length is what shrinks
    assert all(k == "distance" for _, k in probed)
    # "with little effort" in the goal sentence: the hold probes carry an action cost at which full
    # torque on both joints costs EFFORT per step; a goal that does not ask for it leaves probes alone
    from rewardsmith.propose.offline import EFFORT, effort_weight
    costs = [[t for t in p.meta["terms"] if t["kind"] == "action_cost"] for p in reach if "names most" in p.note]
    assert [[t["weight"] for t in c] for c in costs] == [[effort_weight(reacher.schema)]] * 2
    assert effort_weight(reacher.schema) * 2 * 1.0 ** 2 == pytest.approx(EFFORT)
    assert relevance(reacher.description, reacher.schema).effort
    assert not relevance(get_task("inverted_pendulum").description, get_task("inverted_pendulum").schema).effort
    # a goal that names a field's negative side ("rotate backwards"; the doc: "negative is backward
    # rotation") is probed in that direction; a positive side named, or none, leaves the sign alone
    flip = get_task("halfcheetah_backflip")
    assert relevance(flip.description, flip.schema).negative == {"torso_ang_vel"}
    probes = [p.meta["terms"][0] for p in OfflineProposer().propose(
        ProposalContext(task=flip, generation=0, k=6, history=[], seed=0)) if "names most" in p.note]
    assert [(t["field"], t["kind"], t["sign"]) for t in probes] == [
        ("torso_ang_vel", k, -1.0) for k in ("value", "progress", "rise")]
    for name in ("mountain_car_continuous", "cartpole", "ant_spin", "hopper"):
        assert not relevance(get_task(name).description, get_task(name).schema).negative
    two_sided = StateSchema.from_json({"fields": [
        {"name": "w", "shape": [], "unit": "1", "doc": "turn rate; negative is backward, positive is forward"}],
        "action": {"kind": "continuous", "shape": [1], "doc": "push"}})
    assert relevance("Goal: turn backward.", two_sided).negative == {"w"}
    assert not relevance("Goal: turn forward, never backward.", two_sided).negative
    assert not relevance("Goal: turn as fast as possible.", two_sided).negative
    # later generations do not restart from the leads
    history = [_scored(p.source, f"g00-{i}", p.meta, float(i), {}, [0.0, 1.0, 2.0]) for i, p in enumerate(props)]
    later = OfflineProposer().propose(ProposalContext(task=task, generation=1, k=6, history=history, seed=0))
    assert not any("names most" in p.note for p in later)
    # fields the description names are drawn more often than the rest
    many = OfflineProposer().propose(ProposalContext(task=task, generation=0, k=60, history=[], seed=9))
    reads = [t["field"] for p in many[3:] for t in p.meta["terms"][1:] if t["field"]]
    assert reads.count("torso_ang_vel") > reads.count("prev_action")


def test_rise_pays_for_increases_only():
    from rewardsmith.propose.offline import Term, render
    from rewardsmith.validate.load import load_reward_fn

    task = get_task("hopper_jump")
    for sign, up_pays in ((1.0, True), (-1.0, False)):
        fn = load_reward_fn(render([Term("rise", "torso_pos", weight=1.0, index=2, sign=sign)], task.schema, "t"))
        base = {**{f.name: jnp.zeros(f.shape, jnp.float32) for f in task.schema.fields}, "dt": jnp.float32(0.1)}
        low = task.schema.make_state({**base, "torso_pos": jnp.array([0.0, 0.0, 1.0])})
        high = task.schema.make_state({**base, "torso_pos": jnp.array([0.0, 0.0, 1.2])})
        climb, fall = float(fn(low, None, high)[0]), float(fn(high, None, low)[0])
        # 2 m/s up: per second, as the schema has the step
        assert (climb, fall) == ((pytest.approx(2.0), 0.0) if up_pays else (0.0, pytest.approx(2.0)))


def test_distance_is_the_length_of_a_vector_and_pulls_from_afar():
    """A distance term is minus the Euclidean length (an offset's distance, not the mean of its
    components), its slope the same far from zero as near it; on one component it is |x|."""
    from rewardsmith.propose.offline import Term, render
    from rewardsmith.validate.load import load_reward_fn

    task = get_task("reacher")
    base = {f.name: jnp.zeros(f.shape, jnp.float32) for f in task.schema.fields}

    def at(offset):
        return task.schema.make_state({**base, "tip_to_target": jnp.array(offset, jnp.float32)})

    fn = load_reward_fn(render([Term("distance", "tip_to_target", weight=2.0)], task.schema, "t"))
    assert float(fn(at([0, 0, 0]), None, at([0.3, 0.4, 0.0]))[0]) == pytest.approx(-1.0)  # 2 x 0.5 m
    far = float(fn(None, None, at([0.4, 0.0, 0.0]))[0]) - float(fn(None, None, at([0.5, 0.0, 0.0]))[0])
    near = float(fn(None, None, at([0.0, 0.0, 0.0]))[0]) - float(fn(None, None, at([0.1, 0.0, 0.0]))[0])
    assert far == pytest.approx(near, rel=1e-4) == pytest.approx(0.2, rel=1e-4)
    one = load_reward_fn(render([Term("distance", "tip_to_target", weight=1.0, index=1)], task.schema, "t"))
    assert float(one(None, None, at([0.3, -0.4, 0.0]))[0]) == pytest.approx(-0.4)
    # scalars have no length: never drawn for them
    from rewardsmith.propose.offline import _random_term
    import random
    rng = random.Random(0)
    mcc = get_task("mountain_car_continuous")
    assert all(_random_term(rng, mcc.schema).kind != "distance" for _ in range(300))
    drawn = [_random_term(rng, task.schema, task.schema.field("tip_to_target")) for _ in range(300)]
    assert any(t.kind == "distance" and t.index is None for t in drawn)
    assert not any(t.kind == "distance" and t.index is not None for t in drawn)


def test_progress_is_per_second_where_the_schema_has_the_step():
    """With a dt field a position's progress is its velocity (the same scale whatever the step);
    without one it stays per step (x10)."""
    from rewardsmith.propose.offline import Term, render
    from rewardsmith.validate.load import load_reward_fn

    hop = get_task("hopper")
    fn = load_reward_fn(render([Term("progress", "torso_pos", weight=1.0, index=0)], hop.schema, "t"))
    base = {f.name: jnp.zeros(f.shape, jnp.float32) for f in hop.schema.fields}
    a = hop.schema.make_state({**base, "dt": jnp.float32(0.008)})
    b = hop.schema.make_state({**base, "dt": jnp.float32(0.008), "torso_pos": jnp.array([0.016, 0.0, 0.0])})
    assert float(fn(a, None, b)[0]) == pytest.approx(2.0, rel=1e-5)  # 2 m/s
    mcc = get_task("mountain_car_continuous")
    fn = load_reward_fn(render([Term("progress", "position", weight=1.0)], mcc.schema, "t"))
    s0 = mcc.schema.make_state({"position": jnp.float32(0.0), "velocity": jnp.float32(0.0), "step": jnp.float32(0)})
    s1 = mcc.schema.make_state({"position": jnp.float32(0.12), "velocity": jnp.float32(0.0), "step": jnp.float32(1)})
    assert float(fn(s0, None, s1)[0]) == pytest.approx(10 * 0.12 / 1.2, rel=1e-5)
