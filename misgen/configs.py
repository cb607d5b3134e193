"""Typed, frozen config dataclasses: presets and ``--set key=value`` overrides.

Every agent (and env) has one frozen dataclass whose field docstrings say what each knob does.
Overrides arrive as strings from the CLI; they are parsed against the field's declared type so that
``--set lr=3e-4`` becomes a float and ``--set nonsense=1`` is a one-line error naming valid fields.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from misgen.errors import MisgenError


def field_names(config_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_type)]


def _parse_value(raw: str, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise MisgenError(f"bad value for {where}: {raw!r} is not a boolean (true/false)")
    if annotation is int:
        try:
            return int(raw)
        except ValueError:
            raise MisgenError(f"bad value for {where}: {raw!r} is not an integer") from None
    if annotation is float:
        try:
            return float(raw)
        except ValueError:
            raise MisgenError(f"bad value for {where}: {raw!r} is not a number") from None
    if annotation is str:
        return raw
    if origin is typing.Literal:
        if raw not in [str(a) for a in args]:
            raise MisgenError(f"bad value for {where}: {raw!r}; valid: {', '.join(map(str, args))}")
        return next(a for a in args if str(a) == raw)
    if origin in (tuple, list, Sequence):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = [v for v in raw.split(",") if v]
        inner = args[0] if args else str
        return tuple(_parse_value(str(v), inner, where) for v in value)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if raw.lower() == "none" and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse_value(raw, arg, where)
            except MisgenError:
                continue
        raise MisgenError(f"bad value for {where}: {raw!r}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``["a=1", "env.size=9"]`` -> ``{"a": "1", "env.size": "9"}``; malformed pairs are errors."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MisgenError(f"bad --set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _nested_type(hints: Mapping[str, Any], name: str) -> type | None:
    """The config dataclass type of field ``name`` when it nests one (``search: SearchConfig``)."""
    hint = hints.get(name)
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _field_default(config_type: type, name: str) -> Any:
    field = next(f for f in dataclasses.fields(config_type) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def build_config(config_type: type, base: Mapping[str, Any], overrides: Mapping[str, str], what: str) -> Any:
    """Instantiate ``config_type`` from ``base`` values and string ``overrides`` (typed, checked).

    A field that nests a config dataclass (``search: SearchConfig``) takes dotted keys in both,
    ``search.rule=puct``, applied on top of that field's default.
    """
    hints = typing.get_type_hints(config_type)
    names = field_names(config_type)
    values: dict[str, Any] = {}
    nested_base: dict[str, dict[str, Any]] = {}
    nested_raw: dict[str, dict[str, str]] = {}
    for key, value in base.items():
        head, dot, rest = key.partition(".")
        if dot and _nested_type(hints, head) is not None:
            nested_base.setdefault(head, {})[rest] = value
        else:
            values[key] = value
    for key, raw in overrides.items():
        head, dot, rest = key.partition(".")
        if dot and _nested_type(hints, head) is not None:
            nested_raw.setdefault(head, {})[rest] = raw
            continue
        if key not in names:
            valid = [f"{n}.<field>" if _nested_type(hints, n) is not None else n for n in names]
            raise MisgenError(f"unknown {what} option {key!r}; valid: {', '.join(valid)}")
        if _nested_type(hints, key) is not None:
            raise MisgenError(f"{what} option {key!r} is a group; set its fields, e.g. {key}.<field>=...")
        values[key] = _parse_value(raw, hints[key], f"{what} option {key!r}")
    for head in {**nested_base, **nested_raw}:
        sub_type = _nested_type(hints, head)
        current = values.get(head, _field_default(config_type, head))
        sub_base = (
            {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
            if current is not None
            else {}
        )
        sub_base.update(nested_base.get(head, {}))
        values[head] = build_config(sub_type, sub_base, nested_raw.get(head, {}), f"{what} {head}")
    try:
        return config_type(**values)
    except (TypeError, ValueError) as err:
        raise MisgenError(f"bad {what} config: {err}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_type: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config saved with :func:`config_to_dict` (lists back to tuples, nested groups
    back to their dataclasses; a group's fields saved flat by older versions are picked up).

    A field added after a config was saved takes its value from the class's ``LEGACY_DEFAULTS``
    (field -> value) when it has one there, not its current default: a new default that changes
    the network (e.g. PPO's ``centre_downsample``) must not silently change an old checkpoint.
    """
    hints = typing.get_type_hints(config_type)
    names = set(field_names(config_type))
    values: dict[str, Any] = {}
    for k, v in data.items():
        if k not in names:
            continue
        sub_type = _nested_type(hints, k)
        if sub_type is not None and isinstance(v, Mapping):
            v = config_from_dict(sub_type, v)
        values[k] = tuple(v) if isinstance(v, list) else v
    legacy_defaults: Mapping[str, Any] = getattr(config_type, "LEGACY_DEFAULTS", {})
    for name, value in legacy_defaults.items():
        if name in names and name not in data:
            values[name] = value
    for name in names:
        sub_type = _nested_type(hints, name)
        if sub_type is not None and name not in values:
            legacy = {k: v for k, v in data.items() if k in set(field_names(sub_type)) and k not in names}
            if legacy:
                values[name] = dataclasses.replace(_field_default(config_type, name), **legacy)
    return config_type(**values)


def field_docs(config_type: type) -> dict[str, str]:
    """Each field's doc, from the class docstring's ``Attributes:`` section or, where a field has
    one, the string literal right below it (an attribute docstring); ``""`` where neither exists."""
    import ast
    import inspect
    import textwrap

    docs = {name: "" for name in field_names(config_type)}
    lines = inspect.cleandoc(config_type.__doc__ or "").splitlines()
    current = None
    inside = False
    for line in lines:
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):  # the next section, e.g. "Notes:"
            break
        stripped = line.strip()
        head, sep, rest = stripped.partition(":")
        if sep and head in docs and len(line) - len(line.lstrip()) <= 4:
            current = head
            docs[head] = rest.strip()
        elif current is not None and stripped:
            docs[current] = f"{docs[current]} {stripped}"
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(config_type)))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id in docs
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def type_name(annotation: Any) -> str:
    """A short readable type: ``int``, ``tuple[int, ...]``, ``auto | grid | impala`` for Literals."""
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_fields(config_type: type) -> list[dict[str, Any]]:
    """``[{name, type, default, doc}]`` of a config dataclass (defaults JSON-ready)."""
    hints = typing.get_type_hints(config_type)
    docs = field_docs(config_type)
    out = []
    for f in dataclasses.fields(config_type):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(
            {
                "name": f.name,
                "type": type_name(hints.get(f.name, f.type)),
                "default": json.loads(json.dumps(default, default=str)),
                "doc": docs[f.name],
            }
        )
    return out
