"""What every optimizer's frozen hyperparameter dataclass shares.

``SGNConfig`` and ``GroupedNewtonConfig`` are frozen dataclasses validated once, in their own
``__post_init__``. This mixin gives them the same dict round trip (a run record stores
``as_dict()`` whole and ``from_dict`` rebuilds it), the same checked ``replace``, and
:func:`resolve`, the one reading of an optimizer's ``config`` argument and keyword overrides.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

C = TypeVar("C", bound="ConfigMixin")


class ConfigMixin:
    """``as_dict`` / ``from_dict`` / ``replace`` for a frozen dataclass; ``WHAT`` names it in errors."""

    WHAT = "optimizer"

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain, JSON-ready dict (the inverse of ``from_dict``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Rebuild a config from ``as_dict()`` output (or its JSON); missing fields take their defaults.

        Raises:
            ValueError: a key that is not a field (named), or an invalid value.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"{cls.__name__}.from_dict needs a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.WHAT} hyperparameters: {unknown}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again).

        Raises:
            TypeError: a name that is not a field, as for any keyword argument.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unexpected {self.WHAT} hyperparameters: {unknown}")
        return dataclasses.replace(self, **changes)


def resolve(cls: type[C], config: C | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> C:
    """An optimizer's configuration from its ``config`` argument and keyword ``overrides``.

    ``None`` means the defaults; a config instance or a dict (``as_dict()`` output) is taken as it is;
    overrides replace fields in every case, and everything is validated by the dataclass.

    Raises:
        ValueError: ``config`` of another type, or an invalid value; TypeError: an unknown override.
    """
    if config is None:
        return cls().replace(**overrides)
    if isinstance(config, cls):
        return config.replace(**overrides) if overrides else config
    if isinstance(config, Mapping):
        return cls.from_dict({**config, **overrides})
    article = "an" if cls.__name__[0] in "AEIOUS" else "a"
    raise ValueError(f"config must be {article} {cls.__name__} or a dict, got {type(config).__name__}")
