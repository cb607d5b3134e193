"""``misgen show ENV``: a level rendered to a PNG for humans, alone or train beside test-shift.

``--seed K`` names the K-th level of the split (level seed ``split.seed_start + K``), so the same K
on two splits shows two different levels with each split's goal placement, and a level can be
looked up again by its number. Native envs build that exact level from their core; other backends
render the first level their env samples with seed K.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import typer

from misgen.errors import MisgenError
from misgen.progress import console

COMPARE_SPLITS = ("train", "test-shift")
MIN_SIDE = 288  # pixels: small grids are upscaled to at least this on their longer side


def level_image(spec: Any, split: str, index: int) -> tuple[np.ndarray, int]:
    """RGB (H, W, 3) uint8 of level ``index`` of ``split`` and the level seed it shows."""
    sp = spec.split(split)
    if not 0 <= index < sp.seed_stop - sp.seed_start:
        raise MisgenError(
            f"--seed must be in [0, {sp.seed_stop - sp.seed_start}) for split {split!r}, got {index}"
        )
    level_seed = sp.seed_start + index
    core = spec.core(split)
    if core is not None:
        state = core.reset(np.array([level_seed], dtype=np.int64))
        return np.asarray(core.render(state, 0), dtype=np.uint8), level_seed
    env = spec.make(split, 1, index)
    try:
        _, info = env.reset(seed=index)
        frames = env.render()
        frame = frames[0] if isinstance(frames, list | tuple) else frames
        if frame is None:
            raise MisgenError(f"env {spec.id!r} cannot render RGB frames")
        seeds = np.asarray(info.get("level_seed", [level_seed]))
        return np.asarray(frame, dtype=np.uint8)[..., :3], int(seeds.reshape(-1)[0])
    finally:
        env.close()


def write_panels(path: Path, title: str, panels: list[tuple[str, np.ndarray]]) -> None:
    """Write titled images as one PNG (side by side, or stacked when they are wide), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, _at_least(img, MIN_SIDE)) for t, img in panels]
    h = max(img.shape[0] for _, img in panels)
    w = max(img.shape[1] for _, img in panels)
    stacked = w > 1.5 * h
    rows, cols = (len(panels), 1) if stacked else (1, len(panels))
    dpi = 100
    size = (cols * (w / dpi + 0.1), rows * (h / dpi + 0.3) + 0.3)
    fig, axes = plt.subplots(rows, cols, figsize=size, dpi=dpi, squeeze=False, layout="constrained")
    fig.suptitle(title, fontsize=10)
    for ax, (title, img) in zip(axes.ravel(), panels, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def _at_least(img: np.ndarray, side: int) -> np.ndarray:
    """Upscale small renders by an integer factor so that titles fit and cells stay crisp."""
    k = max(1, -(-side // max(img.shape[:2])))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1) if k > 1 else img


def show_levels(env_id: str, splits: list[str], index: int, out: Path) -> Path:
    """Render level ``index`` of each split into one PNG at ``out``."""
    from misgen.environments import get_env

    spec = get_env(env_id)
    if not spec.available():
        raise MisgenError(f"env {env_id!r} needs {', '.join(spec.requires)}, which is not installed")
    panels = []
    for split in splits:
        img, level_seed = level_image(spec, split, index)
        panels.append((f"{split}: level {index} (seed {level_seed:,})", img))
    write_panels(out, env_id, panels)
    return out


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show(
        env: str = typer.Argument(..., help="Environment id (see `misgen envs`)."),
        split: str = typer.Option("train", "--split", "-s", help="Split to draw the level from."),
        seed: int = typer.Option(0, help="Level number K within the split (level seed = split start + K)."),
        out: Path = typer.Option(None, help="PNG path (default: runs/show/<env>-<split>-<K>.png)."),
        compare: bool = typer.Option(False, help="Level K of train and of test-shift side by side."),
    ) -> None:
        """Write a PNG of one level, or of a train and a test-shift level side by side (--compare)."""
        from misgen.runstore import runs_root

        splits = list(COMPARE_SPLITS) if compare else [split]
        name = "compare" if compare else split
        path = out or runs_root() / "show" / f"{env}-{name}-{seed}.png"
        show_levels(env, splits, seed, path)
        console.print(f"wrote {path}")
