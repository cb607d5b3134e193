"""The probe protocol: registered pure functions from recorded rollouts to estimates.

A probe is a function ``fn(inp: ProbeInput) -> ProbeOutput | None`` registered with
:func:`register_probe` under a name, an integer version (bump it whenever the numbers it produces
would change for the same rollouts) and ``higher_is_better`` per metric (``None`` where neither
direction is "better", e.g. a share of episodes pursuing a proxy is a finding, not a score).

Probes read :class:`ProbeInput`: the env spec, the rollouts of one policy on every split (collected
once by the harness, :mod:`misgen.probing`), the rollouts of the uniform-random agent on the same
levels (``chance``), the policy itself (only for counterfactual probes that branch the env's
functional core, declared with ``needs_policy=True``), the env overrides of the run and a seed for
their bootstrap. A probe returns ``None`` when it does not apply, or raises :class:`SkipProbe` with
the reason (for example a value map of an agent without a value head); the battery then records it
as skipped. Probes never train agents and never step envs, except counterfactual probes that branch
the functional core explicitly.

``envs`` restricts a probe to some environment ids (``None``: any env); ``requires`` names the
optional core capabilities it needs (:mod:`.hooks`), and the battery skips it naming the missing
one. Every metric is an :class:`~misgen.probes.stats.Estimate` with a 95% interval over episodes;
``details`` holds JSON-able extras (per-episode labels, heatmaps as nested lists) for the report.

Chance baselines: when ``chance`` rollouts are given, :meth:`ProbeDef.run` runs the probe a second
time on them (with the random agent as the policy) and stores the metrics it shares with the
agent's run as ``ProbeResult.chance``: the same metric for a uniform-random agent on the same levels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError
from misgen.probes.hooks import missing
from misgen.probes.rollout import Rollouts
from misgen.probes.stats import Estimate
from misgen.registry import Registry

__all__ = [
    "PROBES",
    "ProbeDef",
    "ProbeInput",
    "ProbeOutput",
    "ProbeResult",
    "SkipProbe",
    "get_probe",
    "register_probe",
]


@dataclass(frozen=True)
class ProbeInput:
    """Everything a probe may read.

    Attributes:
        spec: the environment the rollouts come from.
        rollouts: split name -> rollouts of the probed policy on that split (usually ``train``,
            ``test-iid`` and ``test-shift``; a probe must cope with a missing split).
        policy: the probed policy, for counterfactual probes; ``None`` when only recorded
            rollouts are available (then probes with ``needs_policy`` are skipped).
        seed: seed for the probe's own randomness (bootstrap, held-out splits).
        overrides: the run's env config overrides (``Run.env_overrides``), so a probe that
            rebuilds levels or branches the core uses the same env the rollouts came from.
        chance: split name -> rollouts of the uniform-random agent on the same levels (empty when
            no chance baseline was collected; then no probe can say "above chance").
        chance_policy: the uniform-random agent, for counterfactual probes' chance runs.
    """

    spec: EnvSpec
    rollouts: Mapping[str, Rollouts]
    policy: Any | None = None
    seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)
    chance: Mapping[str, Rollouts] = field(default_factory=dict)
    chance_policy: Any | None = None

    def split(self, name: str) -> Rollouts | None:
        """The rollouts of split ``name``, or ``None`` if they were not collected."""
        return self.rollouts.get(name)

    def chance_split(self, name: str) -> Rollouts | None:
        """The uniform-random agent's rollouts on the levels of split ``name``, if collected."""
        return self.chance.get(name)

    def core(self, split: str) -> Any | None:
        """The env's functional core of ``split`` with the run's overrides (``None``: no core)."""
        return self.spec.core(split, self.overrides)

    def as_chance(self) -> ProbeInput:
        """The same question asked of the uniform-random agent: its rollouts, no further baseline."""
        return ProbeInput(self.spec, self.chance, self.chance_policy, self.seed, self.overrides)


class SkipProbe(Exception):
    """Raised by a probe that does not apply; the battery records the message as the reason."""


@dataclass(frozen=True)
class ProbeOutput:
    """What a probe function returns: its metrics and JSON-able details.

    ``higher_is_better`` may name metrics the registration did not (metrics whose names depend on
    the env, such as one per candidate goal); it overrides the registration's entries.
    """

    metrics: dict[str, Estimate]
    details: dict[str, Any] = field(default_factory=dict)
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    """One probe's result as stored in ``probes/step_N.json``."""

    name: str
    version: int
    metrics: dict[str, Estimate]
    higher_is_better: dict[str, bool | None]
    details: dict[str, Any] = field(default_factory=dict)
    chance: dict[str, Estimate] = field(default_factory=dict)
    """The same metrics for the uniform-random agent on the same levels (where it has them)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "chance": {k: v.to_json() for k, v in self.chance.items()},
            "higher_is_better": dict(self.higher_is_better),
            "details": self.details,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProbeResult:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            metrics={k: Estimate.from_json(v) for k, v in data["metrics"].items()},
            higher_is_better=dict(data.get("higher_is_better", {})),
            details=dict(data.get("details", {})),
            chance={k: Estimate.from_json(v) for k, v in data.get("chance", {}).items()},
        )


ProbeFn = Callable[[ProbeInput], "ProbeOutput | None"]


@dataclass(frozen=True)
class ProbeDef:
    """A registered probe: its function plus the metadata the battery and the report need."""

    name: str
    version: int
    fn: ProbeFn
    higher_is_better: Mapping[str, bool | None]
    needs_policy: bool = False
    envs: tuple[str, ...] | None = None
    description: str = ""
    requires: tuple[str, ...] = ()
    """Core capabilities (names in :data:`~misgen.probes.hooks.CORE_CAPABILITIES`) it needs."""

    def applies(self, spec: EnvSpec, has_policy: bool) -> bool:
        """Whether the battery should run this probe for ``spec`` (with or without a policy)."""
        return self.skip_reason(spec, has_policy) is None

    def skip_reason(
        self, spec: EnvSpec, has_policy: bool, overrides: Mapping[str, Any] | None = None
    ) -> str | None:
        """Why the battery should skip this probe for ``spec``; ``None`` when it applies."""
        if self.needs_policy and not has_policy:
            return "needs the policy (counterfactual probe), only recorded rollouts given"
        if self.envs is not None and spec.id not in self.envs:
            return f"not for env {spec.id}"
        if self.requires:
            split = next(iter(spec.splits))
            lacking = missing(spec.core(split, overrides), self.requires)
            if lacking:
                return f"env {spec.id} lacks core capability {', '.join(repr(c) for c in lacking)}"
        return None

    def direction(self, metric: str, declared: Mapping[str, bool | None]) -> bool | None:
        """``higher_is_better`` of ``metric``: exact name, else its prefix before the first ``/``."""
        for table in (declared, self.higher_is_better):
            if metric in table:
                return table[metric]
            head = metric.split("/", 1)[0]
            if head in table:
                return table[head]
        return None

    def run(self, inp: ProbeInput) -> ProbeResult | None:
        """Call the probe; ``None`` when it does not apply to these rollouts or this agent.

        Raises :class:`SkipProbe` with a reason when the probe says it does not apply. With
        ``inp.chance`` set, also runs the probe on the random agent's rollouts (``chance``).
        """
        if self.skip_reason(inp.spec, inp.policy is not None, inp.overrides) is not None:
            return None
        out = self._call(inp)
        if out is None:
            return None
        chance: dict[str, Estimate] = {}
        if inp.chance and (not self.needs_policy or inp.chance_policy is not None):
            try:
                base = self._call(inp.as_chance())
            except SkipProbe:
                base = None
            if base is not None:
                chance = {k: v for k, v in base.metrics.items() if k in out.metrics}
        return ProbeResult(
            name=self.name,
            version=self.version,
            metrics=dict(out.metrics),
            higher_is_better={m: self.direction(m, out.higher_is_better) for m in out.metrics},
            details=out.details,
            chance=chance,
        )

    def _call(self, inp: ProbeInput) -> ProbeOutput | None:
        out = self.fn(inp)
        if out is not None and not isinstance(out, ProbeOutput):
            raise TypeError(
                f"probe {self.name!r} returned {type(out).__name__}, expected ProbeOutput or None"
            )
        return out


PROBES: Registry[ProbeDef] = Registry("probe", package="misgen.probes")


def register_probe(
    name: str,
    version: int,
    higher_is_better: Mapping[str, bool | None],
    *,
    needs_policy: bool = False,
    envs: tuple[str, ...] | list[str] | None = None,
    requires: tuple[str, ...] = (),
) -> Callable[[ProbeFn], ProbeFn]:
    """Decorator registering ``fn(inp: ProbeInput) -> ProbeOutput | None`` as probe ``name``.

    Args:
        name: registry name (``proxy-pursuit``); duplicates raise.
        version: integer, bumped whenever results for the same rollouts would change.
        higher_is_better: metric name (or prefix before ``/``) -> True / False / None.
        needs_policy: the probe branches the env core and queries the policy (counterfactual).
        envs: env ids the probe applies to; ``None`` for any env.
        requires: core capabilities it needs (names in :data:`misgen.probes.hooks.CORE_CAPABILITIES`).

    The function's docstring first line becomes the probe's description.
    """
    if version < 1:
        raise MisgenError(f"probe {name!r}: version must be >= 1, got {version}")

    def wrap(fn: ProbeFn) -> ProbeFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        PROBES.register(
            name,
            ProbeDef(
                name=name,
                version=version,
                fn=fn,
                higher_is_better=dict(higher_is_better),
                needs_policy=needs_policy,
                envs=tuple(envs) if envs is not None else None,
                description=doc[0] if doc else "",
                requires=tuple(requires),
            ),
        )
        return fn

    return wrap


def get_probe(name: str) -> ProbeDef:
    """The probe named ``name``; unknown names raise with the valid choices."""
    return PROBES.get(name)
