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


def setup(cls: type[C], model, loss: str, config: C | Mapping[str, Any] | None, overrides: Mapping[str, Any]):
    """What every optimizer's constructor checks and derives first.

    Returns:
        ``(config, names, loss_fn)``: the resolved config (:func:`resolve`), the names of the model's
        trainable parameters, and the loss function from the one registry.

    Raises:
        ValueError: a model that is not an ``nn.Module`` or has no trainable parameters, an unknown
            loss, or an invalid config.
    """
    from torch import nn

    from curvlab.losses import LOSSES, loss_function
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = resolve(cls, config, overrides)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("model has no trainable parameters")
    return config, names, loss_function(loss)
