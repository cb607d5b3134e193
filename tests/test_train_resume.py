"""Checkpointing, Ctrl-C and resume in the training harness, with a tiny test-only agent.

The agent is a test double (it fits nothing); it exists to drive the harness through
``ctx.report`` and to raise KeyboardInterrupt at a chosen step like a user's Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from misgen.agents import AGENTS, register_agent
from misgen.agents.base import Agent
from misgen.agents.checkpoint import load_agent
from misgen.runstore import Run, runs_root
from misgen.train import TrainRequest, train


@dataclass(frozen=True)
class CounterConfig:
    num_envs: int = 4
    interrupt_at: int = -1
    """Raise KeyboardInterrupt once this many env steps are done (-1: never)."""


class CounterAgent(Agent):
    """Steps the env with action 0 and counts; its 'weight' is the number of steps seen."""

    name = "test-counter"
    kind = "model-free"
    Config = CounterConfig
    presets = {"debug": {}}
    default_steps = 400

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        self.weight = torch.zeros(1)

    def act(self, obs, state, first, env=None):
        return np.zeros(len(obs), np.int64), state, {}

    def learn(self, env, ctx):
        env.reset(seed=ctx.seed)
        while self.steps_done < ctx.total_steps:
            env.step(np.zeros(env.num_envs, np.int64))
            self.steps_done += env.num_envs
            self.weight += env.num_envs
            if self.config.interrupt_at >= 0 and self.steps_done >= self.config.interrupt_at:
                raise KeyboardInterrupt
            if self.steps_done % 40 == 0:
                ctx.report(self.steps_done, {"charts/steps": self.steps_done})

    def tensors(self):
        return {"weight": self.weight}

    def load_tensors(self, tensors):
        self.weight = tensors["weight"].clone()


if "test-counter" not in AGENTS:
    register_agent(CounterAgent)


def test_checkpoints_and_metrics_are_written():
    run = train(TrainRequest("maze-cheese", "test-counter", seed=0, steps=400, checkpoint_every=100))
    assert [s for s, _ in run.checkpoints()] == [120, 200, 320, 400]
    assert run.status == "complete"
    steps = [m["step"] for m in run.metrics()]
    assert steps == sorted(steps) and steps[-1] == 400
    assert float(load_agent(run.checkpoints()[-1][1]).weight) == 400


def test_interrupt_saves_a_resumable_checkpoint():
    with pytest.raises(KeyboardInterrupt):
        train(TrainRequest("maze-cheese", "test-counter", seed=1, steps=400, overrides={"interrupt_at": "212"}))
    (path,) = runs_root().glob("maze-cheese/test-counter/s1-*")
    run = Run.open(path)
    assert run.status == "interrupted"
    step, ckpt = run.latest_checkpoint()
    assert step == 212 and float(load_agent(ckpt).weight) == 212
    # Resuming needs the same config; the interrupt knob is part of it, so resume that same run.
    with pytest.raises(KeyboardInterrupt):
        train(TrainRequest("maze-cheese", "test-counter", seed=1, steps=400, overrides={"interrupt_at": "212"}, resume=True))


def test_resume_continues_from_last_checkpoint():
    first = train(TrainRequest("maze-cheese", "test-counter", seed=2, steps=200))
    assert first.latest_checkpoint()[0] == 200
    resumed = train(TrainRequest("maze-cheese", "test-counter", seed=2, steps=400, resume=True))
    assert resumed.path == first.path
    assert resumed.latest_checkpoint()[0] == 400
    assert float(load_agent(resumed.latest_checkpoint()[1]).weight) == 400
    steps = [m["step"] for m in resumed.metrics()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
