"""Planner decision throughput: searches per second at 16 and 64 simulations (``misgen bench agents``).

A *decision* is one action chosen for one env by a full search from its current state (with
``num_simulations`` = ``act_simulations`` = 16 or 64). The planner is built with its default
config for the env otherwise (the ``small`` network, untrained: search cost depends on the weights
only through the value-iteration network's early stop, which an untrained one reaches sooner)
and acts with ``act`` on the env's ``train`` split, exactly as evaluation
does, at batch 1 (latency of a single env) and at the default ``num_envs`` (batched search).
The planner runs its network with ``config.threads`` torch threads (1 by default, whatever the
process's setting; see the config). Reported: ``decisions_per_s`` (wall clock) and ``decisions_per_cpu_s`` (per second of this
process's CPU time, less sensitive to other jobs on the machine). Envs without a functional core
get no rows (the planner cannot run there).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

SIMULATIONS = (16, 64)


def planner_decision_rows(
    env_id: str, seconds: float = 2.0, batches: tuple[int, ...] | None = None
) -> list[dict[str, Any]]:
    """Decisions/s of the planner on ``env_id`` for each (simulations, batch); [] for non-native envs."""
    from misgen.agents import get_agent
    from misgen.environments import get_env

    spec = get_env(env_id)
    if spec.make_core is None or not spec.available():
        return []
    cls = get_agent("planner")
    default = cls.Config()
    from misgen.configs import build_config

    rows = []
    for sims in SIMULATIONS:
        for batch in batches or (1, default.num_envs):
            config = build_config(
                cls.Config,
                cls.env_defaults(spec),
                {"search.num_simulations": str(sims), "act_simulations": str(sims)},
                "agent 'planner'",
            )
            env = spec.make("train", batch, 0)
            try:
                agent = cls(config, env.single_observation_space, env.single_action_space, 0)
                obs, _ = env.reset(seed=0)
                first = np.ones(batch, bool)
                decisions, wall, cpu = _time_decisions(agent, env, obs, first, seconds)
            finally:
                env.close()
            rows.append({
                "env": env_id, "simulations": sims, "batch": batch, "decisions": decisions,
                "seconds": round(wall, 3), "decisions_per_s": decisions / max(wall, 1e-9),
                "decisions_per_cpu_s": decisions / max(cpu, 1e-9), "torch_threads": config.threads,
            })  # fmt: skip
    return rows


def _time_decisions(
    agent: Any, env: Any, obs: np.ndarray, first: np.ndarray, seconds: float
) -> tuple[int, float, float]:
    """Act and step until ``seconds`` have passed (one warm-up decision first)."""
    actions, _, _ = agent.act(obs, None, first, env)
    obs, *_ = env.step(actions)
    n, decisions = env.num_envs, 0
    w0, c0 = time.perf_counter(), time.process_time()
    while decisions == 0 or time.perf_counter() - w0 < seconds:
        actions, _, _ = agent.act(obs, None, first, env)
        obs, *_ = env.step(actions)
        decisions += n
    return decisions, time.perf_counter() - w0, time.process_time() - c0
