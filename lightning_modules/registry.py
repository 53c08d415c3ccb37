"""One registry of named things (timm's shape): `register(name)` as a class decorator, `create`,
`get` and `list`. Teachers and students each have one (`teachers.base.TEACHERS`,
`students.base.STUDENTS`), so that YAML files, checkpoints and the command line name them.

The decorator sets the class's `name`, so a class never carries a second spelling of it. The
built-in modules are imported on first use, which runs their decorators; a module imports torch
only where it needs it, so listing the names stays cheap.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from datamodules.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """A name that nothing is registered under; the message lists the names and the nearest."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Classes (or factories) of one kind by name."""

    def __init__(self, kind: str, builtin_modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._builtin = tuple(builtin_modules)
        self._entries: dict[str, Callable[..., T]] = {}
        self._imported = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: make the class available by `name`; sets `cls.name = name`."""

        def wrap(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return wrap

    def _import_builtin(self) -> None:
        if not self._imported:
            self._imported = True
            for module in self._builtin:
                importlib.import_module(module)

    def list(self) -> list[str]:
        """Registered names, sorted."""
        self._import_builtin()
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        """The class registered as `name` (not constructed); an unknown name fails listing the
        registered ones and the nearest."""
        self._import_builtin()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            names = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (registered: {names})")
        return self._entries[name]

    def create(self, name: str, /, **kwargs: Any) -> T:
        """A new instance of the class registered as `name`."""
        return self.get(name)(**kwargs)
