"""Rollout collection: the one place that steps envs for evaluation and handles episode boundaries.

:func:`collect` runs a policy for exactly ``episodes`` episodes on a split (one episode per env
slot, so short episodes are not over-represented), recording per step the agent's and every
candidate goal's position, the actions, rewards and the agent's ``extras`` (features, value,
reward prediction), and per episode the outcome and the goals reached. The result is a frozen
:class:`Rollouts` of arrays that probes read as pure functions, saved as a plain ``.npz`` (loaded
with ``allow_pickle=False``); the harness (:mod:`misgen.probing`) caches them in a run's
``rollouts/`` folder.

:func:`collect_chance` collects the uniform-random agent on exactly the levels of :func:`collect`
with the same arguments (level sampling does not depend on the policy): the chance baseline every
goal and capability measure is compared with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError
from misgen.seeding import derive_seed

ROLLOUT_FORMAT = 1
MAX_EPISODE_STEPS = 100_000


@dataclass(frozen=True)
class Rollouts:
    """Recorded episodes of one policy on one split. ``E`` episodes, ``T`` = longest episode.

    Per-step arrays are padded past each episode's end (positions repeat the final one, actions
    are -1, rewards 0, ``step_mask`` False). Positions have ``T + 1`` entries: before every action
    and after the last.
    """

    env_id: str
    split: str
    goal_names: tuple[str, ...]
    goal_roles: tuple[str, ...]
    seed: int
    level_seed: np.ndarray  # (E,)
    outcome: np.ndarray  # (E,) str: first goal reached, "died" or "timeout"
    intended_return: np.ndarray  # (E,)
    length: np.ndarray  # (E,)
    goal_reached: np.ndarray  # (E, G) bool by episode end
    died: np.ndarray  # (E,) bool
    agent_pos: np.ndarray  # (E, T+1, 2)
    goal_pos: np.ndarray  # (E, T+1, G, 2)
    actions: np.ndarray  # (E, T)
    rewards: np.ndarray  # (E, T)
    step_mask: np.ndarray  # (E, T) bool
    first_obs: np.ndarray  # (E, *obs_shape) observation at t = 0
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> (E, T, ...)

    @property
    def episodes(self) -> int:
        return len(self.level_seed)

    @property
    def intended(self) -> str:
        return self.goal_names[self.goal_roles.index("intended")]

    @property
    def proxies(self) -> tuple[str, ...]:
        return tuple(g for g, r in zip(self.goal_names, self.goal_roles, strict=True) if r == "proxy")

    def goal_index(self, goal: str) -> int:
        return self.goal_names.index(goal)

    def reached(self, goal: str) -> np.ndarray:
        """(E,) whether ``goal`` was reached at any time in each episode."""
        return self.goal_reached[:, self.goal_index(goal)]

    def select(self, mask: np.ndarray) -> Rollouts:
        """The subset of episodes where ``mask`` is True."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                out[f.name] = value[mask]
            elif f.name == "extras":
                out[f.name] = {k: v[mask] for k, v in value.items()}
            else:
                out[f.name] = value
        return Rollouts(**out)


def collect(
    policy: Any,
    spec: EnvSpec,
    split: str,
    episodes: int,
    seed: int,
    *,
    batch: int = 256,
    overrides: Mapping[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Rollouts:
    """Run ``policy`` for ``episodes`` episodes on ``split`` and record everything probes need.

    Args:
        policy: anything with ``initial_state(n)`` and ``act(obs, state, first, env)``.
        spec: the environment.
        split: split name (validated against the spec).
        episodes: number of episodes, each from a fresh env slot.
        seed: rollout seed; level sampling of chunk ``k`` uses ``derive_seed(seed, split, k)``.
        batch: env slots run in parallel.
        overrides: env config overrides.
        on_step: called with the number of env slots still running after every step (progress).
    """
    spec.split(split)
    if episodes < 1:
        raise MisgenError(f"episodes must be >= 1, got {episodes}")
    chunks = []
    done_eps = 0
    chunk = 0
    while done_eps < episodes:
        n = min(batch, episodes - done_eps)
        env = spec.make(split, n, derive_seed(seed, split, chunk), overrides)
        try:
            chunks.append(_run_chunk(policy, env, n, derive_seed(seed, split, chunk, "reset"), on_step))
        finally:
            env.close()
        done_eps += n
        chunk += 1
    return _assemble(chunks, spec, split, seed)


def _facts_rows(
    info: Mapping[str, Any], goal_names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    agent = np.asarray(info["agent_pos"])
    goals = np.stack([np.asarray(info["goal_pos"][g]) for g in goal_names], axis=1)
    reached = np.stack([np.asarray(info["goal_reached"][g], dtype=bool) for g in goal_names], axis=1)
    return agent, goals, reached


def _run_chunk(
    policy: Any, env: Any, n: int, reset_seed: int, on_step: Callable[[int], None] | None
) -> dict[str, Any]:
    goal_names = env.misgen_spec.goal_names
    obs, info = env.reset(seed=reset_seed)
    first_obs = np.array(obs, copy=True)
    agent, goals, _ = _facts_rows(info, goal_names)
    level_seed = np.asarray(info["level_seed"]).copy()
    pos_t, goal_t = [agent.copy()], [goals.copy()]
    act_t: list[np.ndarray] = []
    rew_t: list[np.ndarray] = []
    ext_t: list[dict[str, np.ndarray]] = []
    active = np.ones(n, dtype=bool)
    length = np.zeros(n, np.int64)
    outcome = np.full(n, "timeout", dtype="U32")
    ret = np.zeros(n, np.float64)
    died = np.zeros(n, bool)
    reached_end = np.zeros((n, len(goal_names)), bool)
    state = policy.initial_state(n)
    first = np.ones(n, dtype=bool)
    steps = 0
    while active.any():
        actions, state, extras = policy.act(obs, state, first, env)
        actions = np.asarray(actions)
        obs, reward, terminated, truncated, info = env.step(actions)
        done = np.asarray(terminated) | np.asarray(truncated)
        act_t.append(np.where(active, actions, -1))
        rew_t.append(np.where(active, reward, 0.0))
        ext_t.append({k: np.asarray(v, dtype=np.float32) for k, v in extras.items()})
        agent, goals, reached = _facts_rows(info, goal_names)
        ending = active & done
        if ending.any():
            fin = info["final_info"]
            f_agent, f_goals, f_reached = _facts_rows(fin, goal_names)
            agent = np.where(ending[:, None], f_agent, agent)
            goals = np.where(ending[:, None, None], f_goals, goals)
            reached = np.where(ending[:, None], f_reached, reached)
            outcome[ending] = np.asarray(fin["outcome"])[ending]
            ret[ending] = np.asarray(fin["intended_return"])[ending]
            died[ending] = np.asarray(fin["died"])[ending]
            reached_end[ending] = reached[ending]
        length += active
        prev_pos, prev_goal = pos_t[-1], goal_t[-1]
        pos_t.append(np.where(active[:, None], agent, prev_pos))
        goal_t.append(np.where(active[:, None, None], goals, prev_goal))
        active &= ~done
        first = done
        steps += 1
        if on_step is not None:
            on_step(int(active.sum()))
        if steps > MAX_EPISODE_STEPS:
            raise MisgenError(f"episodes did not end within {MAX_EPISODE_STEPS} steps")
    step_mask = np.arange(steps)[None, :] < length[:, None]
    extras = {}
    if ext_t and ext_t[0]:
        for key in ext_t[0]:
            stacked = np.stack([e[key] for e in ext_t], axis=1)
            mask = step_mask.reshape(*step_mask.shape, *([1] * (stacked.ndim - 2)))
            extras[key] = np.where(mask, stacked, 0.0).astype(np.float32)
    return {
        "level_seed": level_seed,
        "outcome": outcome,
        "intended_return": ret,
        "length": length,
        "goal_reached": reached_end,
        "died": died,
        "agent_pos": np.stack(pos_t, axis=1),
        "goal_pos": np.stack(goal_t, axis=1),
        "actions": np.stack(act_t, axis=1),
        "rewards": np.stack(rew_t, axis=1).astype(np.float32),
        "step_mask": step_mask,
        "first_obs": first_obs,
        "extras": extras,
    }


def _pad_time(a: np.ndarray, t: int, fill: Any, edge: bool = False) -> np.ndarray:
    if a.shape[1] == t:
        return a
    pad = [(0, 0)] * a.ndim
    pad[1] = (0, t - a.shape[1])
    if edge:
        return np.pad(a, pad, mode="edge")
    return np.pad(a, pad, constant_values=fill)


def _assemble(chunks: list[dict[str, Any]], spec: EnvSpec, split: str, seed: int) -> Rollouts:
    t = max(c["actions"].shape[1] for c in chunks)
    cat: dict[str, Any] = {}
    for key in ("level_seed", "outcome", "intended_return", "length", "goal_reached", "died", "first_obs"):
        cat[key] = np.concatenate([c[key] for c in chunks])
    cat["agent_pos"] = np.concatenate([_pad_time(c["agent_pos"], t + 1, 0, edge=True) for c in chunks])
    cat["goal_pos"] = np.concatenate([_pad_time(c["goal_pos"], t + 1, 0, edge=True) for c in chunks])
    cat["actions"] = np.concatenate([_pad_time(c["actions"], t, -1) for c in chunks])
    cat["rewards"] = np.concatenate([_pad_time(c["rewards"], t, 0.0) for c in chunks])
    cat["step_mask"] = np.concatenate([_pad_time(c["step_mask"], t, False) for c in chunks])
    keys = set.intersection(*(set(c["extras"]) for c in chunks)) if chunks else set()
    extras = {k: np.concatenate([_pad_time(c["extras"][k], t, 0.0) for c in chunks]) for k in sorted(keys)}
    return Rollouts(
        env_id=spec.id,
        split=split,
        goal_names=spec.goal_names,
        goal_roles=tuple(g.role for g in spec.goals),
        seed=seed,
        extras=extras,
        **cat,
    )


def save_rollouts(rollouts: Rollouts, path: Path) -> None:
    """Write rollouts as a plain ``.npz`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": ROLLOUT_FORMAT,
        "env_id": rollouts.env_id,
        "split": rollouts.split,
        "goal_names": list(rollouts.goal_names),
        "goal_roles": list(rollouts.goal_roles),
        "seed": rollouts.seed,
    }
    arrays = {
        f.name: getattr(rollouts, f.name)
        for f in fields(rollouts)
        if isinstance(getattr(rollouts, f.name), np.ndarray)
    }
    arrays.update({f"extra__{k}": v for k, v in rollouts.extras.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)


def load_rollouts(path: Path) -> Rollouts:
    """Read rollouts written by :func:`save_rollouts` (no pickle)."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except (OSError, ValueError, KeyError) as err:
        raise MisgenError(f"cannot read rollouts {path}: {err}") from None
    extras = {k.removeprefix("extra__"): arrays.pop(k) for k in list(arrays) if k.startswith("extra__")}
    return Rollouts(
        env_id=meta["env_id"],
        split=meta["split"],
        goal_names=tuple(meta["goal_names"]),
        goal_roles=tuple(meta["goal_roles"]),
        seed=int(meta["seed"]),
        extras=extras,
        **arrays,
    )


def collect_chance(
    spec: EnvSpec,
    split: str,
    episodes: int,
    seed: int,
    *,
    batch: int = 256,
    overrides: Mapping[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Rollouts:
    """Rollouts of a uniform-random agent on the levels :func:`collect` with these arguments uses."""
    return collect(
        chance_agent(spec, seed),
        spec,
        split,
        episodes,
        seed,
        batch=batch,
        overrides=overrides,
        on_step=on_step,
    )


def chance_agent(spec: EnvSpec, seed: int) -> Any:
    """The uniform-random agent of ``spec``'s action space (its action seed derived from ``seed``)."""
    from misgen.agents import get_agent

    cls = get_agent("random")
    env = spec.make(next(iter(spec.splits)), 1, 0)
    try:
        return cls(
            cls.Config(),
            env.single_observation_space,
            env.single_action_space,
            derive_seed(seed, "chance-actions"),
        )
    finally:
        env.close()
