"""A name -> object registry that refuses duplicates and answers unknown names with the choices.

Used for environments, agents and probes. Registration happens at import time of the module that
defines the entry; :meth:`Registry.load_all` imports every module of a package so entries living in
new files register themselves without editing a central list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from misgen.errors import unknown_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (``env``, ``agent``, ``probe``)."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self._package = package
        self._entries: dict[str, T] = {}
        self._loaded = package is None

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a second registration of the same name is a bug."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` form of :meth:`register`."""

        def wrap(entry: T) -> T:
            return self.register(name, entry)

        return wrap

    def load_all(self) -> None:
        """Import every module under the owning package so all entries are registered."""
        if self._loaded:
            return
        self._loaded = True
        assert self._package is not None
        package = importlib.import_module(self._package)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{self._package}."):
            if module.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            importlib.import_module(module.name)

    def get(self, name: str) -> T:
        """Return the entry, or raise a one-line error listing the valid names."""
        self.load_all()
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_choice(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        self.load_all()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self.load_all()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        self.load_all()
        return name in self._entries
