"""The ppo agent: SB3 VecEnv adapter semantics, networks, training, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from misgen.agents import get_agent
from misgen.agents.base import SimpleContext
from misgen.agents.checkpoint import load_agent, save_agent, torch_generator
from misgen.agents.grid_torso import centre_on
from misgen.agents.novelty import EpisodicNovelty
from misgen.agents.ppo import PPOAgent, PPOConfig
from misgen.agents.ppo.networks import GridCNN, ImpalaCNN, resolve_network
from misgen.agents.ppo.novelty import NoveltyBonusVecEnv
from misgen.agents.ppo.sb3_vecenv import MisgenSB3VecEnv
from misgen.environments import get_env
from misgen.errors import MisgenError
from misgen.train import TrainRequest, train

SPEC = get_env("maze-cheese")
DEBUG = PPOConfig(**PPOAgent.presets["debug"])


def make_agent(seed: int = 0, config: PPOConfig = DEBUG) -> PPOAgent:
    env = SPEC.make("train", 1, 0)
    return PPOAgent(config, env.single_observation_space, env.single_action_space, seed)


def trained(steps: int, seed: int = 0, agent: PPOAgent | None = None) -> tuple[PPOAgent, SimpleContext]:
    agent = agent or make_agent(seed)
    env = SPEC.make("train", agent.config.num_envs, seed)
    ctx = SimpleContext(total_steps=steps, start_step=agent.steps_done, seed=seed)
    agent.learn(env, ctx)
    return agent, ctx


# Adapter ------------------------------------------------------------------------------------------
def test_adapter_terminal_observation_is_the_final_obs_and_returned_obs_is_the_reset():
    env = SPEC.make("train", 4, 3, {"max_steps": 5})
    venv = MisgenSB3VecEnv(env)
    venv.seed(11)
    obs = venv.reset()
    assert obs.shape == (4, 3, 13, 13) and obs.dtype == np.uint8
    actions = np.array([0, 3, 1, 2])  # up, right, down, left: cheese is far away, so a timeout
    for t in range(5):
        expected_state, *_ = env.core.step(env.state.copy(), actions)
        expected_obs = env.core.observe(expected_state)
        obs, rewards, dones, infos = venv.step(actions)
        if t < 4:
            assert not dones.any() and all("terminal_observation" not in i for i in infos)
    assert dones.all()
    for i, info in enumerate(infos):
        np.testing.assert_array_equal(info["terminal_observation"], expected_obs[i])
        assert info["TimeLimit.truncated"] is True
        assert info["episode"] == {"r": 0.0, "l": 5}
        assert info["is_success"] is False
    start = env.state.agent  # the next episode's start cell (it depends on the level's maze size)
    assert (obs[np.arange(len(start)), 1, start[:, 0], start[:, 1]] == 1).all(), (
        "returned obs is the first obs of the next episode"
    )
    np.testing.assert_array_equal(obs, env.core.observe(env.state))


def test_adapter_reports_success_and_termination_on_the_cheese():
    env = SPEC.make("train", 3, 5)
    venv = MisgenSB3VecEnv(env)
    venv.reset()
    finished: dict[int, dict] = {}
    for _ in range(200):
        _, rewards, dones, infos = venv.step(env.oracle_actions("cheese"))
        for i in np.flatnonzero(dones):
            finished.setdefault(int(i), infos[i])
        if len(finished) == 3:
            break
    assert len(finished) == 3
    for info in finished.values():
        assert info["is_success"] is True and info["TimeLimit.truncated"] is False
        assert info["episode"]["r"] == 10.0
        assert info["terminal_observation"][1].sum() == 1


def test_adapter_reset_seeding_matches_the_env():
    venv = MisgenSB3VecEnv(SPEC.make("train", 4, 0))
    venv.seed(123)
    ref, _ = SPEC.make("train", 4, 99).reset(seed=123)
    np.testing.assert_array_equal(venv.reset(), ref)


class _DictVectorEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, space: gym.Space, mode: AutoresetMode = AutoresetMode.SAME_STEP) -> None:
        self.metadata = {"autoreset_mode": mode}
        self.num_envs = 2
        self.single_observation_space = space
        self.single_action_space = gym.spaces.Discrete(4)


def test_adapter_refuses_dict_observations_and_other_autoreset_modes():
    image = gym.spaces.Box(0, 1, (3, 5, 5), np.uint8)
    with pytest.raises(MisgenError, match="Box"):
        MisgenSB3VecEnv(_DictVectorEnv(gym.spaces.Dict({"image": image})))
    with pytest.raises(MisgenError, match="SAME_STEP"):
        MisgenSB3VecEnv(_DictVectorEnv(image, AutoresetMode.NEXT_STEP))
    with pytest.raises(MisgenError, match="channels-first"):
        MisgenSB3VecEnv(_DictVectorEnv(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)))


# Networks ---------------------------------------------------------------------------------------
def test_networks_shapes_and_auto_choice():
    grid = gym.spaces.Box(0, 1, (3, 13, 13), np.uint8)
    rgb = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    assert resolve_network("auto", grid) == "grid" and resolve_network("auto", rgb) == "impala"
    assert resolve_network("impala", grid) == "impala"
    assert GridCNN(grid, features_dim=32, channels=8)(torch.ones(5, 3, 13, 13, dtype=torch.uint8)).shape == (
        5,
        32,
    )
    impala = ImpalaCNN(rgb)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    out = impala(x)
    assert out.shape == (2, 256) and (out >= 0).all()
    assert impala.scale == pytest.approx(1 / 255)
    assert torch.allclose(impala(x), impala.linear(impala.stages(x.float() / 255)), atol=1e-5)
    rgb_agent = PPOAgent(PPOConfig(), rgb, gym.spaces.Discrete(15), 0)
    assert rgb_agent.network == "impala" and isinstance(rgb_agent.policy.features_extractor, ImpalaCNN)


# Acting, training, checkpoints --------------------------------------------------------------------
def test_act_extras_and_initial_weights_depend_only_on_the_seed():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = make_agent(seed=4), make_agent(seed=4)
    assert torch.equal(torch.random.get_rng_state(), before), (
        "building an agent must not touch the global RNG"
    )
    for k, v in a.tensors().items():
        assert torch.equal(v, b.tensors()[k])
    obs, _ = SPEC.make("train", 6, 0).reset(seed=0)
    actions, state, extras = a.act(obs, None, np.ones(6, bool))
    assert actions.shape == (6,) and actions.dtype == np.int64 and state is None
    assert extras["features"].shape == (6, DEBUG.features_dim) and extras["features"].dtype == np.float32
    assert extras["value"].shape == (6,)
    np.testing.assert_allclose(extras["action_probs"].sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(MisgenError, match="shape"):
        a.act(obs[:, :2], None, np.ones(6, bool))


def test_train_save_load_acts_identically(tmp_path):
    agent, ctx = trained(512)
    assert agent.steps_done >= 512 and agent.steps_done % (DEBUG.num_envs * DEBUG.n_steps) == 0
    assert [s for s, _ in ctx.history] == list(range(128, agent.steps_done + 1, 128)), (
        "one report per rollout"
    )
    last = ctx.history[-1][1]
    for key in (
        "losses/value_loss",
        "losses/policy_gradient_loss",
        "losses/entropy_loss",
        "losses/approx_kl",
        "charts/sps",
    ):
        assert key in last and np.isfinite(last[key])
    save_agent(agent, tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "agent.json").read_text())
    assert meta["agent"] == "ppo" and meta["state"]["steps_done"] == agent.steps_done
    loaded = load_agent(tmp_path / "ckpt")
    assert loaded.steps_done == agent.steps_done and loaded.n_updates == agent.n_updates
    for k, v in agent.tensors().items():
        assert torch.equal(v, loaded.tensors()[k]), k
    obs, _ = SPEC.make("test-shift", 16, 1).reset(seed=1)
    first = np.ones(16, bool)
    agent.generator, loaded.generator = torch_generator(7), torch_generator(7)
    a1, _, e1 = agent.act(obs, None, first)
    a2, _, e2 = loaded.act(obs, None, first)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(e1["features"], e2["features"])
    greedy = dataclasses.replace(loaded.config, deterministic=True)
    agent.config, loaded.config = greedy, greedy
    g1, g2 = agent.act(obs, None, first)[0], loaded.act(obs, None, first)[0]
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(g1, e1["action_probs"].argmax(axis=1))


def test_same_seed_same_weights_and_different_seed_differs():
    a, _ = trained(256, seed=3)
    b, _ = trained(256, seed=3)
    c, _ = trained(256, seed=4)
    ta, tb, tc = a.tensors(), b.tensors(), c.tensors()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)


def test_resume_continues_from_steps_done(tmp_path):
    agent, _ = trained(256, seed=2)
    save_agent(agent, tmp_path / "ckpt")
    loaded = load_agent(tmp_path / "ckpt")
    before = {k: v.clone() for k, v in loaded.tensors().items()}
    _, ctx = trained(512, seed=5, agent=loaded)
    assert [s for s, _ in ctx.history] == [384, 512]
    assert loaded.steps_done == 512 and loaded.n_updates == 2 * agent.n_updates
    assert not torch.equal(before["policy.action_net.weight"], loaded.tensors()["policy.action_net.weight"])
    assert not torch.equal(before["optim.0.exp_avg"], loaded.tensors()["optim.0.exp_avg"])
    trained(512, seed=5, agent=loaded)  # already done: no-op
    assert loaded.steps_done == 512


def test_corrupt_or_mismatched_weights_raise_misgen_error(tmp_path):
    agent = make_agent()
    save_agent(agent, tmp_path / "good")
    bad = save_agent(agent, tmp_path / "garbage")
    (bad / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MisgenError, match="corrupt checkpoint"):
        load_agent(bad)
    wider = save_agent(agent, tmp_path / "wider")
    meta = json.loads((wider / "agent.json").read_text())
    meta["config"]["channels"] = 12
    (wider / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(MisgenError, match="do not match"):
        load_agent(wider)
    assert load_agent(tmp_path / "good").steps_done == 0


def test_config_validation_and_registry():
    assert get_agent("ppo") is PPOAgent and PPOAgent.kind == "model-free"
    with pytest.raises(ValueError, match="batch_size"):
        PPOConfig(num_envs=2, n_steps=4, batch_size=64)
    with pytest.raises(MisgenError, match="num_envs"):
        make_agent().learn(SPEC.make("train", 3, 0), SimpleContext(100))


def test_harness_trains_and_checkpoints_ppo():
    run = train(TrainRequest("maze-cheese", "ppo", seed=0, steps=384, preset="debug"))
    assert run.status == "complete"
    steps = [m["step"] for m in run.metrics()]
    assert steps == [128, 256, 384]
    assert load_agent(run.checkpoints()[-1][1]).steps_done == 384


def test_centre_on_puts_the_marked_cell_in_the_middle():
    x = torch.zeros(2, 2, 3, 3)
    x[0, 0, 0, 0] = 1  # agent top-left
    x[1, 0, 2, 1] = 1  # agent bottom-middle
    x[:, 1] = torch.arange(9.0).view(3, 3)
    y = centre_on(x, 0)
    assert y.shape == (2, 3, 5, 5)
    assert torch.all(y[:, 0, 2, 2] == 1) and y[:, 0].sum() == 2
    # The board's values keep their offsets from the agent; off the board is zero with board flag 0.
    assert torch.equal(y[0, 1, 2:, 2:], x[0, 1])
    assert torch.equal(y[1, 1, :3, 1:4], x[1, 1])
    assert y[0, 2].sum() == 9 and torch.equal(y[0, 2, 2:, 2:], torch.ones(3, 3))


def test_strided_and_pooled_torsos_see_every_cell_and_halve_the_centred_board():
    """Both ways of halving the centred board give the same shapes, and with ``stride`` a change
    to any single cell of the board still changes the features (no cell falls between windows)."""
    from misgen.agents.grid_torso import GridTorso

    torch.manual_seed(0)
    pooled = GridTorso((3, 13, 13), 32, 8, 3, centre_channel=1)
    strided = GridTorso((3, 13, 13), 32, 8, 3, centre_channel=1, downsample="stride")
    assert [p.shape for p in pooled.parameters()] == [p.shape for p in strided.parameters()]
    x = torch.zeros(1, 3, 13, 13)
    x[0, 1, 6, 6] = 1
    base = strided(x)
    assert pooled(x).shape == base.shape == (1, 32)
    for r in range(13):
        for c in range(13):
            if (r, c) != (6, 6):
                y = x.clone()
                y[0, 0, r, c] = 1
                assert not torch.allclose(strided(y), base), f"a wall at {(r, c)} is invisible"
    with pytest.raises(MisgenError, match="downsample"):
        GridTorso((3, 13, 13), 32, 8, 3, centre_channel=1, downsample="avg")  # type: ignore[arg-type]


def test_configs_saved_before_centre_downsample_keep_the_max_pool():
    """An old run's config has no ``centre_downsample``: it must load as the network it was trained
    with (``maxpool``), not as today's default (``stride``)."""
    from misgen.configs import config_from_dict, config_to_dict

    saved = config_to_dict(PPOConfig())
    assert saved["centre_downsample"] == "stride"
    assert config_from_dict(PPOConfig, saved).centre_downsample == "stride"
    del saved["centre_downsample"]
    assert config_from_dict(PPOConfig, saved).centre_downsample == "maxpool"


def test_train_takes_centre_channel_from_the_env_unless_overridden(tmp_path):
    from misgen.train import resolve

    res = resolve(TrainRequest(env="maze-cheese", agent="ppo", root=tmp_path))
    assert res.agent_config.centre_channel == get_env("maze-cheese").agent_channel == 1
    res = resolve(
        TrainRequest(env="maze-cheese", agent="ppo", overrides={"centre_channel": "-1"}, root=tmp_path)
    )
    assert res.agent_config.centre_channel == -1
    assert res.agent_config.explore_bonus == get_env("maze-cheese").exploration_bonus > 0
    res = resolve(TrainRequest(env="minigrid-lava-shortcut", agent="ppo", root=tmp_path))
    assert res.agent_config.centre_channel == -1
    assert (
        resolve(TrainRequest(env="persistent", agent="ppo", root=tmp_path)).agent_config.explore_bonus == 0.0
    )


def test_episodic_novelty_is_per_env_and_per_episode():
    nov = EpisodicNovelty(num_envs=2, obs_size=3, seed=0)
    a, b = np.array([1, 0, 0], np.uint8), np.array([0, 1, 0], np.uint8)
    assert nov.visit(np.stack([a, a])).tolist() == [True, True]
    assert nov.visit(np.stack([a, b])).tolist() == [False, True]
    assert nov.visit(np.stack([b]), np.array([0])).tolist() == [True]
    nov.restart(np.array([1]))
    assert nov.visit(np.stack([a, a])).tolist() == [False, True]  # env 1 forgot its episode
    assert nov.visit(np.zeros((0, 3), np.uint8), np.array([], np.int64)).shape == (
        0,
    )  # every env just finished
    many = np.eye(300, dtype=np.uint8)  # more than the initial row width of 256 hashes
    big = EpisodicNovelty(num_envs=1, obs_size=300)
    assert all(big.visit(row[None])[0] for row in many) and not big.visit(many[:1])[0]


def test_novelty_bonus_is_paid_for_new_observations_only_while_it_lasts():
    env = SPEC.make("train", 4, 0)
    bonus = {"value": 1.0}
    venv = NoveltyBonusVecEnv(MisgenSB3VecEnv(env), lambda: bonus["value"])
    venv.seed(0)
    venv.reset()
    rewards = []
    for _ in range(40):
        venv.step_async(np.zeros(4, np.int64))  # always "up": soon every env is pressed against a wall
        _, reward, done, _ = venv.step_wait()
        rewards.append(reward.copy())
    rewards = np.array(rewards)
    assert rewards[0].max() <= 1.0 + 1e-6 and rewards[-1].max() == 0.0  # standing still earns nothing
    assert 0 < (rewards == 1.0).sum() < rewards.size
    bonus["value"] = 0.0
    venv.step_async(np.full(4, 3, np.int64))
    assert np.all(venv.step_wait()[1] == 0.0)
