"""Partitions of a model's trainable parameters into the S groups T_1..T_S of GroupedNewton.

GroupedNewton moves each group by its own learning rate, theta_s <- theta_s - eta_s u_s, so a partition
is the method's one structural choice: S = 1 gives Cauchy's step along u, one group per tensor (the
reference's "canonical" partition) gives one rate per weight and per bias.

A :class:`Partition` holds parameter *names* (as in ``model.named_parameters()``). Everything keyed
by parameter (directions, gradients) is matched to the groups by name, never by position: the
reference pairs its list of direction tensors with the groups positionally, which silently
mis-assigns them as soon as a partition lists the parameters in another order than the model.
Parameters with ``requires_grad=False`` belong to no group: they are held fixed.

Kinds understood by :func:`make_partition`:

* ``"canonical"``: one group per trainable tensor, labelled by its name, in the model's order.
* ``"trivial"``: one group holding every trainable tensor (S = 1), labelled ``"all"``.
* ``"weights_biases"``: ``"weights"`` (every tensor of dimension >= 2 whose name does not end in
  ``bias``) then ``"biases"`` (names ending in ``bias`` and every 1-D or 0-D tensor, so BatchNorm's
  scale goes with the biases); an empty group is dropped.
* a dict ``{label: [entries]}``: an entry selects a parameter whose name equals it or ends in
  ``"." + entry`` (``"bias"`` selects every ``*.bias``; ``"0.weight"`` selects ``0.weight`` and
  ``block.0.weight`` but not ``fc10.weight``). Every trainable parameter must be selected by exactly one
  group; groups keep the dict's order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from torch import Tensor, nn

__all__ = ["Partition", "PARTITION_KINDS", "make_partition", "trainable_parameters", "group_direction"]

PARTITION_KINDS = ("canonical", "trivial", "weights_biases")

PartitionLike = Union[str, Mapping[str, Sequence[str]], "Partition"]


@dataclass(frozen=True)
class Partition:
    """Groups of parameter names T_1..T_S with a label each (validated on construction).

    Attributes:
        names: one tuple of parameter names per group; no name appears twice; no group is empty.
        labels: one distinct label per group (used in logs, heat-maps and state dicts).

    Raises:
        ValueError: empty or duplicated groups/names, labels not matching the groups.

    Example:
        >>> p = Partition(names=(("0.weight",), ("0.bias",)), labels=("w", "b"))
        >>> p.size, p.group_of("0.bias")
        (2, 1)
    """

    names: tuple[tuple[str, ...], ...]
    labels: tuple[str, ...]

    def __post_init__(self):
        names = tuple(tuple(group) for group in self.names) if _sequence(self.names) else None
        labels = tuple(self.labels) if _sequence(self.labels) else None
        if not names or any(not group for group in names):
            raise ValueError(f"names must be a non-empty sequence of non-empty groups, got {self.names!r}")
        if any(not isinstance(n, str) for group in names for n in group):
            raise ValueError("names must hold parameter names (str)")
        if labels is None or len(labels) != len(names) or any(not isinstance(lb, str) for lb in labels):
            raise ValueError(f"labels must hold one str per group ({len(names)}), got {self.labels!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {labels}")
        flat = [n for group in names for n in group]
        repeated = sorted({n for n in flat if flat.count(n) > 1})
        if repeated:
            raise ValueError(f"names: parameters in more than one group: {repeated}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "labels", labels)

    @property
    def size(self) -> int:
        """S, the number of groups."""
        return len(self.names)

    @property
    def parameters(self) -> tuple[str, ...]:
        """Every grouped parameter name, group by group."""
        return tuple(n for group in self.names for n in group)

    def group_of(self, name: str) -> int:
        """Index s of the group holding parameter ``name`` (``ValueError`` if none does)."""
        for s, group in enumerate(self.names):
            if name in group:
                return s
        raise ValueError(f"parameter {name!r} is in no group of the partition")

    def check(self, model: nn.Module) -> "Partition":
        """Return self if its groups are exactly the model's trainable parameters, else raise."""
        _check_cover(dict(self._as_groups()), trainable_parameters(model))
        return self

    def _as_groups(self) -> list[tuple[str, list[str]]]:
        return [(label, list(group)) for label, group in zip(self.labels, self.names)]


def _sequence(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """``{name: parameter}`` of the parameters that require grad, in ``named_parameters()`` order."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _is_bias(name: str, p: Tensor) -> bool:
    return name.endswith("bias") or p.dim() <= 1


def _select(entry: str, names: Sequence[str]) -> list[str]:
    return [n for n in names if n == entry or n.endswith("." + entry)]


def _check_cover(groups: Mapping[str, Sequence[str]], params: Mapping[str, Tensor]) -> None:
    """Every trainable parameter in exactly one group, and nothing else in any group."""
    flat = [n for group in groups.values() for n in group]
    unknown = sorted({n for n in flat if n not in params})
    missing = [n for n in params if n not in flat]
    duplicated = sorted({n for n in flat if flat.count(n) > 1})
    problems = []
    if unknown:
        problems.append(f"not trainable parameters of the model: {unknown}")
    if missing:
        problems.append(f"trainable parameters in no group: {missing}")
    if duplicated:
        problems.append(f"parameters in more than one group: {duplicated}")
    if problems:
        raise ValueError("partition: " + "; ".join(problems))


def make_partition(model: nn.Module, kind: PartitionLike = "canonical") -> Partition:
    """The partition of ``model``'s trainable parameters named by ``kind`` (module docstring).

    Args:
        model: the network; only parameters with ``requires_grad=True`` are grouped.
        kind: ``"canonical"``, ``"trivial"``, ``"weights_biases"``, a dict ``{label: [names or name
            suffixes]}``, or a :class:`Partition` (checked against the model and returned).

    Returns:
        The :class:`Partition`; within a group, names follow the model's order.

    Raises:
        ValueError: an unknown kind, a model without trainable parameters, or a dict/Partition that
            does not put every trainable parameter in exactly one group (the offending names listed),
            or whose entry selects nothing.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> make_partition(model, "weights_biases").names
        (('0.weight', '2.weight'), ('0.bias', '2.bias'))
        >>> make_partition(model, {"first": ["0.weight", "0.bias"], "last": ["2.weight", "2.bias"]}).labels
        ('first', 'last')
    """
    params = trainable_parameters(model)
    if not params:
        raise ValueError("model: no trainable parameters to partition")
    order = list(params)
    if isinstance(kind, Partition):
        return kind.check(model)
    if isinstance(kind, Mapping):
        if not kind:
            raise ValueError("partition: the dict of groups is empty")
        groups: dict[str, list[str]] = {}
        every = [n for n, _ in model.named_parameters()]
        for label, entries in kind.items():
            if not isinstance(label, str) or not _sequence(entries) or not entries:
                raise ValueError(f"partition: group {label!r} must map a str label to a non-empty list of "
                                 "parameter names or suffixes")
            chosen = []
            for entry in entries:
                hits = _select(str(entry), every)
                trainable_hits = [n for n in hits if n in params]
                if not hits:
                    raise ValueError(f"partition: entry {entry!r} of group {label!r} matches no parameter")
                if not trainable_hits:
                    raise ValueError(f"partition: entry {entry!r} of group {label!r} matches only "
                                     f"parameters that are not trainable: {sorted(set(hits))}")
                chosen += [n for n in trainable_hits if n not in chosen]
            groups[label] = sorted(chosen, key=order.index)
        _check_cover(groups, params)
        return Partition(tuple(tuple(g) for g in groups.values()), tuple(groups))
    if kind == "canonical":
        return Partition(tuple((n,) for n in order), tuple(order))
    if kind == "trivial":
        return Partition((tuple(order),), ("all",))
    if kind == "weights_biases":
        weights = tuple(n for n in order if not _is_bias(n, params[n]))
        biases = tuple(n for n in order if _is_bias(n, params[n]))
        kept = [(label, g) for label, g in (("weights", weights), ("biases", biases)) if g]
        return Partition(tuple(g for _, g in kept), tuple(label for label, _ in kept))
    raise ValueError(f"partition must be one of {PARTITION_KINDS}, a dict or a Partition, got {kind!r}")


def group_direction(partition: Partition, params: Mapping[str, Tensor], direction: Mapping[str, Tensor]
                    ) -> tuple[tuple[Tensor, ...], ...]:
    """The direction's tensors arranged as the partition's groups, matched by parameter name.

    Args:
        partition: the groups.
        params: ``{name: tensor}`` of the grouped parameters (shapes to check against).
        direction: ``{name: tensor}``, u; extra names (e.g. frozen parameters) are ignored.

    Returns:
        ``((u_p for p in T_1), ..., (u_p for p in T_S))``, the tensors themselves (not copies).

    Raises:
        ValueError: ``direction`` is not a dict of tensors, lacks a grouped name, or has a tensor whose
            shape differs from its parameter's.
    """
    if not isinstance(direction, Mapping):
        raise ValueError("direction must be a dict {parameter name: tensor}, got "
                         f"{type(direction).__name__}")
    missing = [n for n in partition.parameters if n not in direction]
    if missing:
        raise ValueError(f"direction has no tensor for parameters {missing}")
    grouped = []
    for group in partition.names:
        tensors = []
        for n in group:
            u = direction[n]
            if not isinstance(u, Tensor) or u.shape != params[n].shape:
                shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
                raise ValueError(f"direction[{n!r}] must be a tensor of shape {tuple(params[n].shape)}, "
                                 f"got {shape}")
            tensors.append(u)
        grouped.append(tuple(tensors))
    return tuple(grouped)
