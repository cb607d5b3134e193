"""Shared pixel helpers for rendering grid states to RGB for humans."""

from __future__ import annotations

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "floor": (236, 232, 220),
    "wall": (60, 60, 70),
    "agent": (40, 110, 220),
    "goal": (245, 190, 30),
    "proxy": (220, 70, 70),
    "region": (250, 222, 200),
    "key": (150, 80, 200),
    "hazard": (200, 60, 40),
}


def upscale(cells: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) cell colours -> (H*scale, W*scale, 3) pixels with a thin grid line."""
    img = np.repeat(np.repeat(cells, scale, axis=0), scale, axis=1)
    if scale >= 6:
        img[::scale, :, :] = (img[::scale, :, :] * 0.85).astype(np.uint8)
        img[:, ::scale, :] = (img[:, ::scale, :] * 0.85).astype(np.uint8)
    return img


def disc(
    img: np.ndarray, row: int, col: int, scale: int, colour: tuple[int, int, int], radius: float = 0.38
) -> None:
    """Draw a filled disc in cell (row, col) of an upscaled image, in place."""
    yy, xx = np.mgrid[0:scale, 0:scale]
    c = (scale - 1) / 2
    mask = (yy - c) ** 2 + (xx - c) ** 2 <= (radius * scale) ** 2
    img[row * scale : (row + 1) * scale, col * scale : (col + 1) * scale][mask] = colour


def outline(img: np.ndarray, row: int, col: int, scale: int, colour: tuple[int, int, int]) -> None:
    """Draw a 1-pixel square outline around cell (row, col), in place."""
    r0, c0 = row * scale, col * scale
    img[r0, c0 : c0 + scale] = colour
    img[r0 + scale - 1, c0 : c0 + scale] = colour
    img[r0 : r0 + scale, c0] = colour
    img[r0 : r0 + scale, c0 + scale - 1] = colour
