"""Run every registered probe on one policy's rollouts: a pure function of its inputs.

:func:`run_probes` takes a :class:`~misgen.probes.base.ProbeInput` (the policy's rollouts on every
split, the uniform-random agent's rollouts on the same levels, the policy) and returns each probe's
JSON entry, the probes skipped with their reasons, and the probes that raised. Loading checkpoints,
collecting and caching rollouts, threads and writing ``probes/step_N.json`` are the harness's job
(:mod:`misgen.probing`).

Goal attribution: when capability on a split is not clearly above chance (``capability``'s
``above_chance/<split>`` interval does not lie above 0), the goal probes of that split keep their
numbers but attribute no goal: their ``details["verdict"]`` reads ``not capable``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from misgen.probes.base import PROBES, ProbeInput, SkipProbe


def run_probes(
    inp: ProbeInput,
    names: Iterable[str] | None = None,
    on_probe: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Run probes ``names`` (default: all registered) on ``inp``.

    Returns ``(results, skipped, errors)``: probe name -> JSON entry (``ProbeResult.to_json()`` plus
    ``n`` and ``seconds``), name -> reason, name -> message with a short traceback. A probe that
    raises is recorded under ``errors`` with the other probes' results kept.
    """
    wanted = list(names) if names is not None else PROBES.names()
    for name in wanted:
        PROBES.get(name)  # unknown names: one-line error with the valid choices
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in wanted:
        pdef = PROBES.get(name)
        if on_probe is not None:
            on_probe(name)
        reason = pdef.skip_reason(inp.spec, inp.policy is not None, inp.overrides)
        if reason is not None:
            skipped[name] = reason
            continue
        t0 = time.perf_counter()
        try:
            result = pdef.run(inp)
        except SkipProbe as why:
            skipped[name] = str(why)
            continue
        except Exception as err:  # noqa: BLE001 - one broken probe must not lose the others
            errors[name] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-2)}"
            continue
        if result is None:
            skipped[name] = "not applicable to these rollouts or this agent"
            continue
        entry = result.to_json()
        entry["n"] = max((e.n for e in result.metrics.values()), default=0)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        results[name] = entry
    return results, skipped, errors
