"""Checkpointing, Ctrl-C and resume in the training harness.

``CounterAgent`` is a test double (it fits nothing) that drives the harness through ``ctx.report``
and raises KeyboardInterrupt at a chosen step like a user's Ctrl-C. The real trainable agents are
interrupted in the middle of a gradient update (right after an optimizer step) and must resume to
exactly the numbers of a run that stopped cleanly at the step the harness rolled back to.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from misgen.agents import AGENTS, register_agent
from misgen.agents.base import Agent
from misgen.agents.checkpoint import load_agent, read_agent_json
from misgen.runstore import Run, runs_root
from misgen.train import RunContext, TrainRequest, train


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
        train(
            TrainRequest("maze-cheese", "test-counter", seed=1, steps=400, overrides={"interrupt_at": "212"})
        )
    (path,) = runs_root().glob("maze-cheese/test-counter/s1-*")
    run = Run.open(path)
    assert run.status == "interrupted"
    # The agent counted to 212, but its last consistent state (its last report) was at 200.
    step, ckpt = run.latest_checkpoint()
    assert step == 200 and float(load_agent(ckpt).weight) == 200 and load_agent(ckpt).steps_done == 200
    # Resuming needs the same config; the interrupt knob is part of it, so resume that same run.
    with pytest.raises(KeyboardInterrupt):
        train(
            TrainRequest(
                "maze-cheese",
                "test-counter",
                seed=1,
                steps=400,
                overrides={"interrupt_at": "212"},
                resume=True,
            )
        )


def test_resume_continues_from_last_checkpoint():
    first = train(TrainRequest("maze-cheese", "test-counter", seed=2, steps=200))
    assert first.latest_checkpoint()[0] == 200
    resumed = train(TrainRequest("maze-cheese", "test-counter", seed=2, steps=400, resume=True))
    assert resumed.path == first.path
    assert resumed.latest_checkpoint()[0] == 400
    assert float(load_agent(resumed.latest_checkpoint()[1]).weight) == 400
    steps = [m["step"] for m in resumed.metrics()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_wall_time_accumulates_across_resumes():
    first = train(TrainRequest("maze-cheese", "test-counter", seed=5, steps=200, eval_every=0))
    wall = first.info["wall_s"]
    assert wall > 0 and read_agent_json(first.latest_checkpoint()[1])["wall_s"] == wall
    resumed = train(TrainRequest("maze-cheese", "test-counter", seed=5, steps=400, eval_every=0, resume=True))
    later = [m["wall_s"] for m in resumed.metrics() if m["step"] > 200]
    assert later and min(later) >= wall
    assert resumed.info["train_wall_s"] >= wall


# The real agents, interrupted mid-update --------------------------------------------------------
# (agent, total steps, env steps of the report to roll back to): two reports in, so the rollback
# target has real updates behind it (dreamer's first report is the end of its random prefill).
TRAINABLE = [("ppo", 384, 256), ("dreamer", 256, 128), ("planner", 128, 64)]
TIMING_KEYS = ("wall_s", "charts/sps", "charts/env_steps_per_s", "charts/updates_per_s")


@contextlib.contextmanager
def _interrupt_after_report(reports_before: int):
    """Raise KeyboardInterrupt right after the first optimizer step that follows the
    ``reports_before``-th report: the weights have moved, the update is not finished."""
    seen = {"reports": 0, "fired_at": -1}
    report = RunContext.report

    def counting_report(self, step, metrics):
        report(self, step, metrics)
        seen["reports"] += 1

    def hook(optimizer, args, kwargs):
        if seen["reports"] >= reports_before and seen["fired_at"] < 0:
            seen["fired_at"] = seen["reports"]
            raise KeyboardInterrupt

    handle = register_optimizer_step_post_hook(hook)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunContext, "report", counting_report)
        try:
            yield seen
        finally:
            handle.remove()


def _weights(ckpt):
    from safetensors.torch import load_file

    return load_file(str(ckpt / "weights.safetensors")), read_agent_json(ckpt)["state"]


def _curve(run):
    return [
        {k: v for k, v in m.items() if k not in TIMING_KEYS and not k.startswith("eval/")}
        for m in run.metrics()
    ]


def _same(a, b):
    ta, sa = a
    tb, sb = b
    assert sa == sb
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"tensors differ: {different[:5]}"


@pytest.mark.parametrize("agent,steps,rollback_step", TRAINABLE)
def test_interrupt_mid_update_resumes_like_a_clean_stop(agent, steps, rollback_step, tmp_path):
    """Interrupted run == run stopped cleanly at the rollback step, bit for bit, before and after resume.

    (A never-stopped run differs after the step: resuming reseeds the env and the learner from the
    step and starts with an empty replay, as any resume does.)
    """
    # B: asked for ``steps``, Ctrl-C in the update after its second report; evaluation on.
    request = TrainRequest(
        "maze-cheese",
        agent,
        seed=3,
        steps=steps,
        preset="debug",
        root=tmp_path / "b",
        eval_every=rollback_step,
    )
    with _interrupt_after_report(reports_before=2) as seen, pytest.raises(KeyboardInterrupt):
        train(request)
    assert seen["fired_at"] == 2, "the interrupt never fired"
    (path,) = (tmp_path / "b").glob(f"maze-cheese/{agent}/s3-*")
    interrupted = Run.open(path)
    assert interrupted.status == "interrupted"
    step, ckpt = interrupted.latest_checkpoint()
    assert step == rollback_step and load_agent(ckpt).steps_done == rollback_step
    assert [m for m in interrupted.metrics() if "eval/success" in m], "no evaluation on the curve"

    # A: asked for exactly ``rollback_step`` steps, finishes cleanly; no evaluation.
    plain = dataclasses.replace(request, root=tmp_path / "a", eval_every=0)
    clean = train(dataclasses.replace(plain, steps=rollback_step))
    assert clean.latest_checkpoint()[0] == rollback_step
    _same(_weights(clean.latest_checkpoint()[1]), _weights(ckpt))

    # Both resume to ``steps``: the same numbers.
    a = train(dataclasses.replace(plain, resume=True))
    b = train(dataclasses.replace(request, resume=True))
    assert (
        a.status == b.status == "complete" and a.latest_checkpoint()[0] == b.latest_checkpoint()[0] >= steps
    )
    _same(_weights(a.latest_checkpoint()[1]), _weights(b.latest_checkpoint()[1]))
    assert _curve(a) == _curve(b)


def test_curve_on_the_true_objective_is_logged_and_named():
    run = train(
        TrainRequest("maze-cheese", "test-counter", seed=6, steps=400, eval_every=100, eval_episodes=8)
    )
    evals = [m for m in run.metrics() if "eval/success" in m]
    # Evaluated at the first report past each multiple of 100, and at the end.
    assert [m["step"] for m in evals] == [120, 200, 320, 400]
    assert all(0.0 <= m["eval/success"] <= 1.0 and m["eval/length"] > 0 for m in evals)
    assert run.info["curves"]["true_objective"] == "eval/success"
    assert run.info["curves"]["eval"] == {
        **run.info["curves"]["eval"],
        "split": "train",
        "every": 100,
        "episodes": 8,
    }
    off = train(TrainRequest("maze-cheese", "test-counter", seed=7, steps=400))  # short runs: off by default
    assert (
        not any("eval/success" in m for m in off.metrics()) and off.info["curves"]["true_objective"] is None
    )


def test_evaluation_measures_the_task_not_a_constant():
    """Positive control and null: the intended-goal oracle always succeeds, a random policy rarely."""
    from misgen.environments import get_env
    from misgen.train import _new_agent, evaluate_policy, resolve

    spec = get_env("maze-cheese")
    oracle = _new_agent(resolve(TrainRequest("maze-cheese", "oracle-intended")), 0)
    randomly = _new_agent(resolve(TrainRequest("maze-cheese", "random")), 0)
    good = evaluate_policy(oracle, spec, {}, 32, seed=1)
    bad = evaluate_policy(randomly, spec, {}, 32, seed=1)
    assert good["eval/success"] == 1.0 and good["eval/return"] > 0
    assert bad["eval/success"] < 0.5 and bad["eval/length"] > good["eval/length"]


def test_on_progress_sees_every_report():
    seen = []
    run = train(
        TrainRequest("maze-cheese", "test-counter", seed=8, steps=200),
        on_progress=lambda s, t: seen.append((s, t)),
    )
    assert seen == [(m["step"], 200) for m in run.metrics()] and seen[-1] == (200, 200)
