"""Brax environments behind the ``EnvAdapter`` protocol, and the state views of the Brax tasks.

The adapter never auto-resets (the trainer computes the reward on the true next state first) and
keeps its own step counter for the time limit. Every reset draws a fresh initial state from its own
key, so reset states stay diverse. ``dt`` and the previous action travel in the env state so that
state views can expose them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rewardsmith.tasks.base import TaskHooks


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class BraxEnvState:
    inner: Any  # brax.envs.base.State
    t: jax.Array
    prev_action: jax.Array
    dt: jax.Array


class BraxAdapter:
    def __init__(self, name: str, backend: str = "generalized", episode_length: int = 1000, env: Any = None,
                 **kwargs: Any):
        """A registered Brax environment by name, or ``env``: a Brax ``Env`` object of your own."""
        if env is None:
            try:
                from brax import envs
            except ImportError:
                raise ImportError("Brax tasks need brax: pip install 'rewardsmith[brax]'") from None
            env = envs.get_environment(name, backend=backend, **kwargs)
        self.env = env
        self.name, self.backend = name, backend
        self.max_episode_steps = int(episode_length)
        self.action_size = int(self.env.action_size)
        # reading env.observation_size runs an un-jitted reset: use eval_shape instead
        self.obs_size = int(jax.eval_shape(self.env.reset, jax.random.PRNGKey(0)).obs.shape[-1])
        self.dt = float(self.env.dt)

    def body_positions(self, env_state: BraxEnvState) -> jax.Array:
        """World positions of every body, for the rollout viewer."""
        return env_state.inner.pipeline_state.x.pos.astype(jnp.float32)

    def body_parents(self) -> list[int]:
        return [int(p) for p in self.env.sys.link_parents]

    def reset(self, key):
        s = self.env.reset(key)
        state = BraxEnvState(inner=s, t=jnp.int32(0), prev_action=jnp.zeros(self.action_size, jnp.float32),
                             dt=jnp.float32(self.dt))
        return s.obs.astype(jnp.float32), state

    def step(self, key, env_state: BraxEnvState, action):
        s2 = self.env.step(env_state.inner, action)
        t = env_state.t + 1
        new = BraxEnvState(inner=s2, t=t, prev_action=jnp.asarray(action, jnp.float32), dt=env_state.dt)
        terminated = s2.done > 0.5
        truncated = (t >= self.max_episode_steps) & ~terminated
        return (s2.obs.astype(jnp.float32), new, jnp.asarray(s2.reward, jnp.float32), terminated, truncated)


def _make(config: Mapping[str, Any]) -> BraxAdapter:
    return BraxAdapter(config["id"], backend=config.get("physics", "spring"),
                       episode_length=int(config.get("episode_length", 1000)), **dict(config.get("kwargs", {})))


# --- quaternion helpers (brax uses w, x, y, z) ---------------------------------------------------

def _rotate(q, v):
    w, r = q[0], q[1:]
    return v + 2.0 * jnp.cross(r, jnp.cross(r, v) + w * v)


def _rotate_inverse(q, v):
    """v expressed in the frame of a body whose orientation is q (w, x, y, z)."""
    return _rotate(q * jnp.array([1.0, -1.0, -1.0, -1.0]), v)


@functools.lru_cache(maxsize=None)
def _joint_limits(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits of a free-floating body's joints (the model's joint order), from its
    Brax system: constants, read once per process."""
    from brax import envs

    with jax.ensure_compile_time_eval():  # the first call may come while a view is being traced
        lower, upper = (np.asarray(x, np.float32)[6:] for x in envs.get_environment(name, backend="spring").sys.dof.limit)
    return lower, upper


@functools.lru_cache(maxsize=None)
def _actuators(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each actuator's joint (index into the joints after the free root), gear and control range."""
    from brax import envs

    with jax.ensure_compile_time_eval():
        act = envs.get_environment(name, backend="spring").sys.actuator
        lo, hi = np.asarray(act.ctrl_range, np.float32).T
        return np.asarray(act.qd_id, np.int32) - 6, np.asarray(act.gear, np.float32), lo, hi


def _isaac_extras(es: BraxEnvState, name: str, n_joints: int, pos, rot, targets) -> dict:
    """Isaac Gym inputs of Eureka's Ant and Humanoid rewards that are functions of the Brax state:
    ``to_target`` (horizontal), ``angle_to_target`` (the target's bearing minus the torso's yaw) and
    ``dof_force`` (each joint's actuator torque, gear x the clipped action)."""
    joint, gear, lo, hi = _actuators(name)
    to_target = (targets - pos).at[2].set(0.0)
    w, x, y, z = rot
    yaw = jnp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    force = jnp.zeros(n_joints, jnp.float32).at[joint].set(gear * jnp.clip(es.prev_action, lo, hi))
    return {"to_target": to_target, "angle_to_target": _wrap(jnp.arctan2(to_target[1], to_target[0]) - yaw),
            "dof_force": force}


def _free_body_view(es: BraxEnvState, q_start: int, qd_start: int, target=(1000.0, 0.0, 0.0),
                    limits: tuple[np.ndarray, np.ndarray] | None = None, isaac: str | None = None) -> dict:
    ps = es.inner.pipeline_state
    pos, rot = ps.x.pos[0].astype(jnp.float32), ps.x.rot[0].astype(jnp.float32)
    vel, ang = ps.xd.vel[0].astype(jnp.float32), ps.xd.ang[0].astype(jnp.float32)
    up = _rotate(rot, jnp.array([0.0, 0.0, 1.0]))
    heading = _rotate(rot, jnp.array([1.0, 0.0, 0.0]))
    targets = jnp.asarray(target, jnp.float32)
    dof_pos, dof_vel = ps.q[q_start:].astype(jnp.float32), ps.qd[qd_start:].astype(jnp.float32)
    to_target = targets - pos
    to_target = to_target.at[2].set(0.0)
    view = {
        "torso_pos": pos, "torso_rot": rot, "torso_vel": vel, "torso_ang_vel": ang,
        "up_vec": up, "heading_vec": heading,
        "joint_pos": dof_pos, "joint_vel": dof_vel,
        "prev_action": es.prev_action, "dt": es.dt, "step": es.t.astype(jnp.float32),
        # Isaac Gym names used by Eureka's prompts and rewards
        "root_states": jnp.concatenate([pos, rot[1:], rot[:1], vel, ang]),  # xyzw quaternion
        "dof_pos": dof_pos, "dof_vel": dof_vel, "targets": targets,
        "potentials": -jnp.linalg.norm(to_target) / es.dt,
        "up_proj": up[2],
        "heading_proj": jnp.dot(heading, to_target / jnp.maximum(jnp.linalg.norm(to_target), 1e-6)),
        "vel_loc": _rotate_inverse(rot, vel), "angvel_loc": _rotate_inverse(rot, ang),
    }
    if limits is not None:
        view["dof_limits_lower"], view["dof_limits_upper"] = (jnp.asarray(x) for x in limits)
    if isaac is not None:
        view.update(_isaac_extras(es, isaac, dof_vel.shape[0], pos, rot, targets))
    return view


def _planar_view(es: BraxEnvState) -> dict:
    ps = es.inner.pipeline_state
    return {
        "torso_pos": ps.x.pos[0].astype(jnp.float32), "torso_vel": ps.xd.vel[0].astype(jnp.float32),
        "torso_angle": ps.q[2].astype(jnp.float32), "torso_ang_vel": ps.qd[2].astype(jnp.float32),
        "joint_pos": ps.q[3:].astype(jnp.float32), "joint_vel": ps.qd[3:].astype(jnp.float32),
        "prev_action": es.prev_action, "dt": es.dt, "step": es.t.astype(jnp.float32),
    }


def _x_progress(state, action, next_state, env_reward, terminated):
    # metres the torso moved forward (+x) this step: the episodic sum is the distance run
    return (next_state.torso_pos[0] - state.torso_pos[0]).astype(jnp.float32)


def _alive(state, action, next_state, env_reward, terminated):
    return jnp.float32(1.0)


def _pendulum_view(es: BraxEnvState) -> dict:
    ps = es.inner.pipeline_state
    return {"cart_pos": ps.q[0].astype(jnp.float32), "pole_angle": ps.q[1].astype(jnp.float32),
            "cart_vel": ps.qd[0].astype(jnp.float32), "pole_ang_vel": ps.qd[1].astype(jnp.float32),
            "prev_action": es.prev_action, "step": es.t.astype(jnp.float32)}


def _reacher_view(es: BraxEnvState) -> dict:
    from brax import base

    ps = es.inner.pipeline_state
    offset = base.Transform.create(pos=jnp.array([0.11, 0.0, 0.0]))
    tip = ps.x.take(1).do(offset).pos.astype(jnp.float32)
    tip_vel = offset.do(ps.xd.take(1)).vel.astype(jnp.float32)
    target = ps.x.pos[2].astype(jnp.float32)
    return {"fingertip_pos": tip, "fingertip_vel": tip_vel, "target_pos": target,
            "tip_to_target": tip - target, "joint_pos": ps.q[:2].astype(jnp.float32),
            "joint_vel": ps.qd[:2].astype(jnp.float32), "prev_action": es.prev_action,
            "step": es.t.astype(jnp.float32)}


def _reacher_fitness(state, action, next_state, env_reward, terminated):
    # negative fingertip-to-target distance each step (metres); 0 is perfect
    return -jnp.linalg.norm(next_state.tip_to_target).astype(jnp.float32)


def _wrap(angle):
    """An angle difference wrapped to [-pi, pi): the step's true rotation while it turns less than pi."""
    return (angle + jnp.pi) % (2.0 * jnp.pi) - jnp.pi


def _torso_height(state, action, next_state, env_reward, terminated):
    # the torso's height after the step; the task takes the episode's maximum
    return next_state.torso_pos[2].astype(jnp.float32)


def _backward_turns(state, action, next_state, env_reward, terminated):
    # backward (nose-up) pitch rotation this step, in turns: the episodic sum is the net back flips
    return (-_wrap(next_state.torso_angle - state.torso_angle) / (2.0 * jnp.pi)).astype(jnp.float32)


def _ccw_turns(state, action, next_state, env_reward, terminated):
    # counter-clockwise heading change this step, in turns: the episodic sum is the net spins
    yaw0 = jnp.arctan2(state.heading_vec[1], state.heading_vec[0])
    yaw1 = jnp.arctan2(next_state.heading_vec[1], next_state.heading_vec[0])
    return (_wrap(yaw1 - yaw0) / (2.0 * jnp.pi)).astype(jnp.float32)


ANT = TaskHooks(make_env=_make, fitness_step=_x_progress,
                state_view=lambda es: _free_body_view(es, 7, 6, limits=_joint_limits("ant"), isaac="ant"))
HUMANOID = TaskHooks(make_env=_make, fitness_step=_x_progress,
                     state_view=lambda es: _free_body_view(es, 7, 6, limits=_joint_limits("humanoid"), isaac="humanoid"))
HALFCHEETAH = TaskHooks(make_env=_make, state_view=_planar_view, fitness_step=_x_progress)
HOPPER = TaskHooks(make_env=_make, state_view=_planar_view, fitness_step=_x_progress)
INVERTED_PENDULUM = TaskHooks(make_env=_make, state_view=_pendulum_view, fitness_step=_alive)
REACHER = TaskHooks(make_env=_make, state_view=_reacher_view, fitness_step=_reacher_fitness)
# new behaviours: a Brax body, a description and a ground-truth fitness, no environment reward used
HOPPER_JUMP = TaskHooks(make_env=_make, state_view=_planar_view, fitness_step=_torso_height)
HALFCHEETAH_BACKFLIP = TaskHooks(make_env=_make, state_view=_planar_view, fitness_step=_backward_turns)
_NO_TARGET = ("targets", "potentials", "heading_proj")  # Isaac's forward target means nothing to a spin
ANT_SPIN = TaskHooks(make_env=_make, fitness_step=_ccw_turns,
                     state_view=lambda es: {k: v for k, v in _free_body_view(es, 7, 6, limits=_joint_limits("ant")).items()
                                            if k not in _NO_TARGET})

__all__ = ["ANT", "ANT_SPIN", "HALFCHEETAH", "HALFCHEETAH_BACKFLIP", "HOPPER", "HOPPER_JUMP", "HUMANOID",
           "INVERTED_PENDULUM", "REACHER", "BraxAdapter", "math"]
