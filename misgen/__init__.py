"""misgen: a test suite for goal misgeneralization and deceptive alignment in RL agents.

``import misgen`` registers every environment under its Gymnasium id, so that

    import gymnasium as gym
    import misgen
    env = gym.make("misgen/MazeCheese-v0", split="test-shift")

works like any other Gymnasium env (``gym.make("misgen:misgen/MazeCheese-v0")`` does the import
itself). Gymnasium 1.x has no plugin entry points any more (0.26's ``gymnasium.envs`` entry point
group was removed), so registration happens at import time, here.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _import_gym_quietly() -> None:
    """Import the legacy ``gym`` package, if installed, with its stderr banner suppressed.

    The ``misgen[procgen]`` extra installs gym (procgen-mirror depends on it), and stable-baselines3
    imports gym whenever it is present; gym then prints a multi-line deprecation banner to stderr,
    which would break misgen's one-line CLI errors. misgen itself never uses gym.
    """
    import importlib.util

    if importlib.util.find_spec("gym") is None:
        return
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        try:
            import gym  # noqa: F401
        except Exception:  # a broken optional install must not break misgen
            pass


_import_gym_quietly()


from misgen import environments  # noqa: E402, F401 - importing it registers the Gymnasium ids
