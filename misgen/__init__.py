"""misgen: a test suite for goal misgeneralization and deceptive alignment in RL agents."""

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
