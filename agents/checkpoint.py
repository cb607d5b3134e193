"""Checkpoints as directories: ``weights.safetensors`` + ``agent.json``. No pickle anywhere.

``agent.json`` holds the registry name, the resolved config, the observation/action spaces, the
non-tensor state and package versions, so :func:`load_agent` can rebuild the agent from the
directory alone. Writes go to a temporary sibling directory that is renamed into place, so a crash
or Ctrl-C mid-save never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from misgen.agents.base import Agent
from misgen.configs import config_from_dict, config_to_dict
from misgen.errors import MisgenError

FORMAT_VERSION = 1


def space_to_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    raise TypeError(f"cannot serialize space {space}")


def space_from_json(data: dict[str, Any]) -> gym.Space:
    if data["type"] == "Discrete":
        return gym.spaces.Discrete(int(data["n"]))
    if data["type"] == "Box":
        dtype = np.dtype(data["dtype"])
        return gym.spaces.Box(
            np.array(data["low"], dtype=dtype),
            np.array(data["high"], dtype=dtype),
            tuple(data["shape"]),
            dtype,
        )
    raise MisgenError(f"unsupported space type {data['type']!r} in checkpoint")


def save_agent(agent: Agent, directory: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``agent`` to ``directory`` atomically (temp dir + rename)."""
    from misgen.provenance import package_versions

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in agent.tensors().items()}
    save_file(tensors, str(tmp / "weights.safetensors"))
    meta = {
        "format": FORMAT_VERSION,
        "agent": agent.name,
        "kind": agent.kind,
        "config": config_to_dict(agent.config),
        "seed": agent.seed,
        "observation_space": space_to_json(agent.observation_space),
        "action_space": space_to_json(agent.action_space),
        "state": agent.state_json(),
        "versions": package_versions(),
        **(extra or {}),
    }
    (tmp / "agent.json").write_text(json.dumps(meta, indent=2))
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old)
    else:
        tmp.rename(directory)
    return directory


def read_agent_json(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "agent.json"
    if not path.is_file():
        raise MisgenError(f"no checkpoint at {directory} (missing agent.json)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MisgenError(f"corrupt checkpoint {directory}: agent.json is not valid JSON ({err})") from None


def load_agent(directory: Path) -> Agent:
    """Rebuild an agent from a checkpoint directory, with a one-line error if it is broken."""
    from misgen.agents import get_agent

    directory = Path(directory)
    meta = read_agent_json(directory)
    try:
        cls = get_agent(meta["agent"])
        config = config_from_dict(cls.Config, meta["config"])
        agent = cls(
            config,
            space_from_json(meta["observation_space"]),
            space_from_json(meta["action_space"]),
            int(meta["seed"]),
        )
    except KeyError as err:
        raise MisgenError(f"corrupt checkpoint {directory}: agent.json lacks {err}") from None
    weights = directory / "weights.safetensors"
    if not weights.is_file():
        raise MisgenError(f"corrupt checkpoint {directory}: missing weights.safetensors")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise MisgenError(
            f"corrupt checkpoint {directory}: cannot read weights.safetensors ({err})"
        ) from None
    try:
        agent.load_tensors(tensors)
    except (KeyError, RuntimeError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MisgenError(
            f"corrupt checkpoint {directory}: weights do not match the agent ({first})"
        ) from None
    agent.load_state_json(meta.get("state", {}))
    return agent


def torch_generator(seed: int) -> torch.Generator:
    """An explicit CPU torch generator (never the global RNG)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state (Adam moments, step counts) as ``<prefix><i>.<slot>`` tensors."""
    out: dict[str, torch.Tensor] = {}
    for index, slots in optimizer.state_dict()["state"].items():
        for slot, value in slots.items():
            out[f"{prefix}{index}.{slot}"] = torch.as_tensor(value).detach().clone()
    return out


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    tensors: Mapping[str, torch.Tensor],
    prefix: str,
) -> None:
    """Inverse of :func:`optimizer_tensors` for an optimizer over ``params`` (in their order).

    Strict: state for a parameter index the network lacks, or moments whose shape differs from
    their parameter's, raise (a checkpoint from another architecture).
    """
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        index, _, slot = key.removeprefix(prefix).partition(".")
        i = int(index)
        if not 0 <= i < len(params):
            raise KeyError(f"optimizer state for parameter {i}, the network has {len(params)}")
        if slot != "step" and value.shape != params[i].shape:
            raise ValueError(
                f"optimizer state {key} has shape {tuple(value.shape)}, parameter has {tuple(params[i].shape)}"
            )
        state.setdefault(i, {})[slot] = value.clone()
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
