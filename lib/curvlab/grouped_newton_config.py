"""The hyperparameters of GroupedNewton as one frozen, validated value (``GroupedNewtonConfig``).

A run record stores ``config.as_dict()`` whole; ``GroupedNewtonConfig.from_dict`` rebuilds it (also
from its JSON, lists for tuples). Every field is checked once, in ``__post_init__``: an invalid value
raises ``ValueError`` naming the parameter, and values are normalised (ints, floats, tuples, the
plateau rule as a ``PlateauConfig``) so that equal settings give equal configs.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from curvlab._config import ConfigMixin
from curvlab.grouped_newton_directions import DIRECTIONS

__all__ = ["GroupedNewtonConfig", "PlateauConfig", "REGULARIZATIONS", "AVERAGINGS", "PARTITION_KINDS",
           "SUMMARY_ROUTES"]

REGULARIZATIONS = ("cubic", "newton", "ridge")
AVERAGINGS = ("uniform", "ema", None)
PARTITION_KINDS = ("canonical", "trivial", "weights_biases")
SUMMARY_ROUTES = ("auto", "nested", "func")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class PlateauConfig:
    """The plateau rule (the reference's ``ReduceDampingOnPlateau``; defaults: the 2025 final runs).

    At each ``epoch_end(mean_loss)``: the epoch improves if mean_loss < best (1 - threshold); after
    more than ``patience`` epochs in a row without improvement, lambda_1 and the current rates are
    multiplied by ``factor`` and the count restarts.

    Attributes:
        patience: int >= 0 (2).
        threshold: relative improvement in [0, 1) (1e-4).
        factor: in (0, 1) (0.5).
    """

    patience: int = 2
    threshold: float = 1e-4
    factor: float = 0.5

    def __post_init__(self) -> None:
        if not (_is_int(self.patience) and self.patience >= 0):
            raise ValueError(f"plateau.patience must be an int >= 0, got {self.patience!r}")
        if not (_is_real(self.threshold) and 0 <= self.threshold < 1):
            raise ValueError(f"plateau.threshold must be in [0, 1), got {self.threshold!r}")
        if not (_is_real(self.factor) and 0 < self.factor < 1):
            raise ValueError(f"plateau.factor must be in (0, 1), got {self.factor!r}")
        object.__setattr__(self, "patience", int(self.patience))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "factor", float(self.factor))


_INTS = ("period", "avg_period", "warmup", "seed")
_REALS = ("momentum", "dampening", "eps", "damping", "damping_int", "ridge", "threshold", "ema", "lr_ema")
_BOOLS = ("nesterov", "diagonal", "remove_negative", "maintain_true_lrs", "summary_shuffle")


@dataclass(frozen=True)
class GroupedNewtonConfig(ConfigMixin):
    """Hyperparameters of ``GroupedNewton``; defaults follow the reference's 2025 final runs.

    Attributes:
        partition: ``"canonical"`` (one group per parameter tensor), ``"trivial"`` (S = 1),
            ``"weights_biases"``, or a dict {label: [parameter names or name suffixes]}
            (``curvlab.grouped_newton_partition.make_partition``).
        direction: ``"sgd_momentum"`` or ``"adam"`` (``curvlab.grouped_newton_directions``).
        momentum, dampening, nesterov: of the SGD direction (0.9, 0, False); momentum 0 gives u = g.
        betas, eps: of the Adam direction ((0.9, 0.999), 1e-8).
        damping: lambda_1 > 0, the global factor of the rates, lr = lambda_1 eta (1, the reference's
            default; its final runs use 0.03 (MLP) to 0.3 (LeNet, VGG)).
        damping_int: lambda_int >= 0 of the cubic term (1); dimensionless, larger = more regularised.
        regularization: ``"cubic"`` (the paper's method), ``"newton"`` (eta = H_bar^{-1} g_bar) or
            ``"ridge"`` (eta = (H_bar + ridge I)^{-1} g_bar).
        ridge: >= 0 (0), used by ``"ridge"``.
        threshold: relative singularity threshold in [0, 1) on D of the cubic solver (0: D_s = 0 exactly).
        diagonal: use diag(H_bar) only (the ablation asked for in review).
        period: steps between two recomputations of the summaries (the reference's period_hg; 10).
        averaging: ``"uniform"`` (the reference's double average over the last ``avg_period`` + 1
            .. 2 ``avg_period`` estimates), ``"ema"`` (X <- ema X + (1 - ema) x from the first estimate)
            or None (each estimate alone).
        avg_period: P >= 1 of the uniform average (3).
        warmup: recomputations at the start that only feed the averages, without moving the network
            (3; warmup x period training steps).
        ema: factor in [0, 1) of the ``"ema"`` averaging (0.9).
        lr_ema: factor in [0, 1) of an exponential average of the rates themselves (the reference's
            mom_lrs; 0 = off).
        remove_negative: set negative rates to 0 (True).
        maintain_true_lrs: the rate average ``lr_ema`` and the state kept on failure hold the
            unclamped rates, clamped only when applied (True); False clamps before averaging.
        plateau: None or a ``PlateauConfig`` (or its dict) for ``epoch_end``.
        summary_batch_size: rows per summary batch; None = the training batch's size.
        summary_shuffle: a fresh random order of the summary data at each pass (True); False cycles
            it in order, faithful to the reference's unshuffled loader.
        seed: seed of the summary-batch order.
        summary_route: how the summaries are differentiated (``"auto"``, ``"nested"``, ``"func"``).

    Example:
        >>> config = GroupedNewtonConfig(damping=0.1, plateau={"patience": 1})
        >>> config.plateau.patience, GroupedNewtonConfig.from_dict(config.as_dict()) == config
        (1, True)
        >>> GroupedNewtonConfig(period=0)
        Traceback (most recent call last):
        ...
        ValueError: invalid GroupedNewton hyperparameters: period must be an int >= 1, got 0
    """

    WHAT = "GroupedNewton"      # names the method in from_dict / replace errors (not a field)

    partition: Union[str, Mapping[str, Sequence[str]]] = "canonical"
    direction: str = "sgd_momentum"
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    damping: float = 1.0
    damping_int: float = 1.0
    regularization: str = "cubic"
    ridge: float = 0.0
    threshold: float = 0.0
    diagonal: bool = False
    period: int = 10
    averaging: Optional[str] = "uniform"
    avg_period: int = 3
    warmup: int = 3
    ema: float = 0.9
    lr_ema: float = 0.0
    remove_negative: bool = True
    maintain_true_lrs: bool = True
    plateau: Optional[PlateauConfig] = None
    summary_batch_size: Optional[int] = None
    summary_shuffle: bool = True
    seed: int = 0
    summary_route: str = "auto"

    def __post_init__(self) -> None:
        bad = _problems(self)
        if bad:
            raise ValueError("invalid GroupedNewton hyperparameters: " + "; ".join(bad))
        for name in _INTS:
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in _REALS:
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "betas", (float(self.betas[0]), float(self.betas[1])))
        if isinstance(self.partition, Mapping):
            object.__setattr__(self, "partition", {str(k): tuple(v) for k, v in self.partition.items()})
        if self.summary_batch_size is not None:
            object.__setattr__(self, "summary_batch_size", int(self.summary_batch_size))


def _problems(c: GroupedNewtonConfig) -> list[str]:
    """One message per invalid field, each naming the field (normalises ``plateau`` to its dataclass)."""
    bad: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            bad.append(msg)

    if isinstance(c.partition, Mapping):
        need(bool(c.partition) and all(
            isinstance(k, str) and isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0
            and all(isinstance(n, str) for n in v) for k, v in c.partition.items()),
             "partition as a dict must map labels to non-empty lists of parameter names")
    else:
        need(c.partition in PARTITION_KINDS,
             f"partition must be one of {PARTITION_KINDS} or a dict, got {c.partition!r}")
    need(c.direction in DIRECTIONS, f"direction must be one of {DIRECTIONS}, got {c.direction!r}")
    need(c.regularization in REGULARIZATIONS,
         f"regularization must be one of {REGULARIZATIONS}, got {c.regularization!r}")
    need(c.averaging in AVERAGINGS, f"averaging must be one of {AVERAGINGS}, got {c.averaging!r}")
    need(c.summary_route in SUMMARY_ROUTES,
         f"summary_route must be one of {SUMMARY_ROUTES}, got {c.summary_route!r}")
    for name in _BOOLS:
        need(isinstance(getattr(c, name), bool), f"{name} must be a bool, got {getattr(c, name)!r}")
    for name, low in (("period", 1), ("avg_period", 1), ("warmup", 0), ("seed", 0)):
        value = getattr(c, name)
        need(_is_int(value) and value >= low, f"{name} must be an int >= {low}, got {value!r}")
    need(c.summary_batch_size is None or (_is_int(c.summary_batch_size) and c.summary_batch_size >= 1),
         f"summary_batch_size must be None or an int >= 1, got {c.summary_batch_size!r}")
    need(_is_real(c.damping) and c.damping > 0, f"damping must be a finite number > 0, got {c.damping!r}")
    need(not _is_real(c.threshold) or c.threshold < 1, f"threshold must be in [0, 1), got {c.threshold!r}")
    for name in ("damping_int", "ridge", "threshold", "momentum", "eps"):
        value = getattr(c, name)
        need(_is_real(value) and value >= 0, f"{name} must be a finite number >= 0, got {value!r}")
    need(_is_real(c.dampening) and 0 <= c.dampening <= 1, f"dampening must be in [0, 1], got {c.dampening!r}")
    for name in ("ema", "lr_ema"):
        value = getattr(c, name)
        need(_is_real(value) and 0 <= value < 1, f"{name} must be in [0, 1), got {value!r}")
    need(isinstance(c.betas, Sequence) and len(c.betas) == 2
         and all(_is_real(b) and 0 <= b < 1 for b in c.betas),
         f"betas must be two numbers in [0, 1), got {c.betas!r}")
    need(not (c.nesterov is True and (not _is_real(c.momentum) or c.momentum <= 0 or c.dampening != 0)),
         "nesterov=True needs momentum > 0 and dampening = 0")
    if isinstance(c.plateau, Mapping):
        try:
            object.__setattr__(c, "plateau", PlateauConfig(**c.plateau))
        except (TypeError, ValueError) as error:
            bad.append(f"plateau: {error}")
    else:
        need(c.plateau is None or isinstance(c.plateau, PlateauConfig),
             f"plateau must be None, a PlateauConfig or a dict, got {c.plateau!r}")
    return bad
