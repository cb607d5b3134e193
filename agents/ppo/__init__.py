"""PPO (stable-baselines3) as a misgen agent: SB3 ``VecEnv`` adapter, CNN extractors, the agent."""

from __future__ import annotations

from misgen.agents.ppo.agent import PPOAgent, PPOConfig

__all__ = ["PPOAgent", "PPOConfig"]
