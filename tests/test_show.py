"""``misgen show``: a PNG of a level, alone or train beside test-shift."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from misgen.cli import app
from misgen.commands.show import level_image, show_levels
from misgen.environments import get_env
from misgen.errors import MisgenError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("env", ["coinrun-shift", "keys-chests"])
def test_level_image_is_that_level_of_the_split(env):
    spec = get_env(env)
    img, seed = level_image(spec, "test-shift", 5)
    assert seed == spec.split("test-shift").seed_start + 5
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    again, _ = level_image(spec, "test-shift", 5)
    other, _ = level_image(spec, "train", 5)
    assert np.array_equal(img, again) and not np.array_equal(img, other)


def test_compare_writes_one_png_with_both_splits(tmp_path):
    out = show_levels("coinrun-shift", ["train", "test-shift"], 3, tmp_path / "cmp.png")
    single = show_levels("coinrun-shift", ["train"], 3, tmp_path / "one.png")
    assert out.read_bytes()[:8] == PNG_MAGIC and single.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image as mpimg

    two, one = mpimg.imread(out), mpimg.imread(single)
    assert two.shape[0] > 1.6 * one.shape[0], "wide levels are stacked: train above test-shift"
    assert not list(tmp_path.glob(".*tmp*")), "no temp file left behind"


def test_cli_default_path_and_bad_level_number(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["show", "keys-chests", "--compare", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "show" / "keys-chests-compare-2.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(MisgenError, match="--seed must be in"):
        level_image(get_env("keys-chests"), "train", -1)
