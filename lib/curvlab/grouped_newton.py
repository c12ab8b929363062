"""GroupedNewton (Wolinski, arXiv 2312.03885): one learning rate per parameter group from a Newton summary.

The parameters are split into S groups T_1..T_S (``curvlab.grouped_newton_partition``). A base optimizer
proposes a direction u (``curvlab.grouped_newton_directions``: SGD momentum or Adam, with lr 1) and the
step is theta_s <- theta_s - lr_s u_s. The rates come from the restricted function
phi(eta) = L(theta - sum_s eta_s u_s) of S scalars, whose derivatives at eta = 0 are the summaries
(``curvlab.grouped_newton_summaries``): g_bar_s = -dphi/deta_s = <grad_{T_s} L, u_s>,
H_bar_st = d2phi/deta_s deta_t = u_s^T H u_t, and D3_s = nabla^3 L[u_s, u_s, u_s]. The rates minimise the
model of phi (``curvlab.grouped_newton_solver``): the Newton summary eta = H_bar^{-1} g_bar, or, the
paper's method, the anisotropic cubic model -g_bar.eta + 1/2 eta^T H_bar eta + (lambda_int/6) ||D eta||^3
with D = diag(|D3|^(1/3)). Then lr_s = lambda_1 eta_s.

The hyperparameters are one frozen value, ``GroupedNewtonConfig`` (``curvlab.grouped_newton_config``).
One ``step(inputs, targets)``:

1. loss and gradient on the training batch; u = direction(gradient);
2. every ``period`` steps (steps 1, 1 + period, ...): the summaries (g_bar, H_bar, D3) for that u on the
   next summary batch; they are folded into running averages (``averaging``) and the averaged model
   is solved; negative rates are set to 0 (``remove_negative``); a solver failure keeps the previous
   rates (zeros before the first success) and is counted;
3. every step, also between recomputations (the rates stay fixed while u changes):
   theta_s <- theta_s - lr_s u_s, except during the warm-up (the first ``warmup`` recomputations
   only feed the averages).

Relation to the reference code (``p-wol/GroupedNewton``, ``NewtonSummaryUniformAvg``):

* kept: the "use"/"up" double uniform average (the rates use the mean of the last P + 1 .. 2P
  estimates, P = ``avg_period``), the warm-up that does not move the network, the rates kept on a
  solver failure, ReLU of the rates, lr = lambda_1 eta, the plateau rule on the epoch's mean loss,
  torch's SGD / Adam recursions for u;
* changed, as the newer reference does or recommends: the direction is mapped to the groups by parameter
  name, never by position (the reference mis-pairs tensors for a partition that reorders them); the
  summary batches come from a shuffled pass over the summary data (``summary_shuffle=True``;
  ``False`` cycles the data in order, as the reference's unshuffled loader does); the solver works
  in float64 with a relative singularity threshold on D (0 by default), as in the newer reference.
* beyond the reference: a non-finite loss, gradient, direction, summary or step is skipped and
  counted, never written into the parameters or the averages; the averages of D are averages of
  |D3|^(1/3) (the scale the model uses; D -> |c| D under u_s -> c u_s either way).
* the averages mix summaries computed with different directions (u changes every step) and their
  rates are applied to later directions, as in the reference: consistent only because a momentum
  direction changes slowly.
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from curvlab._config import setup
from curvlab.grouped_newton_config import (
    AVERAGINGS,
    PARTITION_KINDS,
    REGULARIZATIONS,
    SUMMARY_ROUTES,
    GroupedNewtonConfig,
    PlateauConfig,
)
from curvlab.grouped_newton_directions import make_direction
from curvlab.grouped_newton_partition import make_partition
from curvlab.grouped_newton_solver import solve_learning_rates
from curvlab.grouped_newton_summaries import summaries

__all__ = ["GroupedNewton", "GroupedNewtonConfig", "PlateauConfig", "uniform_average", "ema_average",
           "next_rates", "applied_rates", "normalised", "REGULARIZATIONS", "AVERAGINGS", "PARTITION_KINDS",
           "SUMMARY_ROUTES"]

InputsLike = Union[Tensor, Sequence[Tensor]]


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


# ------------------------------------------------------------------------------------------ pure rules
Estimate = tuple[Tensor, Tensor, Tensor]        # (g_bar (S,), H_bar (S, S), D (S,)), float64


def _mix(old: Optional[Estimate], new: Estimate, k: int) -> Estimate:
    """X <- ((k - 1)/k) X + x/k: the running mean of k values (X is replaced when k = 1)."""
    if old is None or k == 1:
        return tuple(x.clone() for x in new)
    return tuple(o * ((k - 1) / k) + x / k for o, x in zip(old, new))


def uniform_average(state: Mapping[str, Optional[Estimate]], n: int, estimate: Estimate, period: int
                    ) -> tuple[Estimate, dict[str, Optional[Estimate]]]:
    """The reference's double uniform average at recomputation n (0-based); returns ``(used, new_state)``.

    Two running means, "use" and "up", with cycle position t = n mod P (P = ``period``): at t = 0,
    use <- up and up restarts; then both take in the estimate, up as the mean of the t + 1 estimates
    of the current cycle, use as the mean of the t + 1 estimates so far during the first cycle and of
    the P + t + 1 latest ones afterwards. The returned "use" is thus the plain mean of the last
    min(n + 1, P + t + 1) estimates: P + 1 .. 2P of them once the first cycle is over, so that a new
    estimate never dominates.
    """
    t = n % period
    use, up = state.get("use"), state.get("up")
    if t == 0:
        use, up = up, None
    up = _mix(up, estimate, t + 1)
    use = _mix(use, estimate, t + 1 if n < period else period + t + 1)
    return use, {"use": use, "up": up}


def ema_average(state: Mapping[str, Optional[Estimate]], estimate: Estimate, factor: float
                ) -> tuple[Estimate, dict[str, Optional[Estimate]]]:
    """X <- factor X + (1 - factor) x, started at the first estimate; returns ``(used, new_state)``."""
    old = state.get("ema")
    new = tuple(x.clone() for x in estimate) if old is None else tuple(
        o * factor + x * (1 - factor) for o, x in zip(old, estimate))
    return new, {"ema": new}


def next_rates(state: Optional[Tensor], eta: Tensor, *, lr_ema: float, remove_negative: bool,
               maintain_true_lrs: bool) -> Tensor:
    """The rate state after a successful solve: an optional EMA of eta, clamped before it or not.

    With ``maintain_true_lrs`` the state holds the unclamped (true) rates and ``applied_rates``
    clamps them; otherwise eta is clamped first (ReLU if ``remove_negative``) and the average runs on
    the clamped values. The first rates are taken as they are (no EMA from zero).
    """
    if remove_negative and not maintain_true_lrs:
        eta = eta.clamp_min(0.0)
    if state is None or lr_ema == 0:
        return eta.clone()
    return state * lr_ema + eta * (1 - lr_ema)


def applied_rates(state: Optional[Tensor], damping: float, remove_negative: bool, size: int) -> Tensor:
    """The applied rates lambda_1 max(eta, 0) (or lambda_1 eta); zeros before any successful solve."""
    if state is None:
        return torch.zeros(size, dtype=torch.float64)
    return damping * (state.clamp_min(0.0) if remove_negative else state)


def normalised(H: Tensor) -> Tensor:
    """H_st / sqrt(|H_ss H_tt|) (0 where a diagonal entry is 0): the inter-group correlations."""
    scale = H.diagonal().abs().sqrt()
    outer = scale[:, None] * scale[None, :]
    return torch.where(outer > 0, H / torch.where(outer > 0, outer, 1.0), torch.zeros_like(H))


# ------------------------------------------------------------------------------------------ summary data
def _as_tuple(inputs: InputsLike) -> tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def _pack(inputs: tuple[Tensor, ...]) -> InputsLike:
    return inputs[0] if len(inputs) == 1 else inputs


class _SummaryBatches:
    """Consecutive batches of the summary data, cycling forever, in a fresh random order per pass.

    With ``shuffle=False`` the order is the data's own, the same at every pass (the reference's
    unshuffled loader). The last batch of a pass may be smaller, as with a ``DataLoader``.
    """

    def __init__(self, inputs: InputsLike, targets: Tensor, batch_size: Optional[int], shuffle: bool,
                 seed: int):
        self.inputs, self.targets = _as_tuple(inputs), targets
        rows = {x.shape[0] for x in (*self.inputs, targets) if isinstance(x, Tensor) and x.dim() > 0}
        if len(rows) != 1 or 0 in rows:
            raise ValueError("summary_data must be non-empty tensors with the same number of rows, got "
                             f"{[tuple(x.shape) for x in (*self.inputs, targets)]}")
        self.rows = rows.pop()
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.order: Optional[Tensor] = None
        self.position = 0

    def next(self, default_size: int) -> tuple[InputsLike, Tensor]:
        size = min(self.batch_size or default_size, self.rows)
        if self.order is None or self.position >= self.rows:
            self.order = (torch.randperm(self.rows, generator=self.generator) if self.shuffle
                          else torch.arange(self.rows))
            self.position = 0
        index = self.order[self.position:self.position + size]
        self.position += size
        device = self.targets.device
        return _pack(tuple(x[index.to(x.device)] for x in self.inputs)), self.targets[index.to(device)]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "position": self.position,
                "order": None if self.order is None else self.order.clone()}

    def check_state(self, state: Any) -> None:
        if not (isinstance(state, Mapping) and {"generator", "position", "order"} <= set(state)):
            raise ValueError("summary_batches in the state dict must have generator, position and order")
        order, position = state["order"], state["position"]
        if not (isinstance(state["generator"], Tensor) and state["generator"].dtype == torch.uint8):
            raise ValueError("summary_batches.generator in the state dict must be a torch.Generator state")
        if not (_is_int(position) and 0 <= position <= self.rows):
            raise ValueError(f"summary_batches.position in the state dict must be in [0, {self.rows}]")
        if order is not None and not (isinstance(order, Tensor) and order.shape == (self.rows,)
                                      and torch.equal(order.sort().values, torch.arange(self.rows))):
            raise ValueError(f"summary_batches.order in the state dict must be a permutation of {self.rows}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"].clone())
        self.position = int(state["position"])
        self.order = None if state["order"] is None else state["order"].clone()


# ------------------------------------------------------------------------------------------ the optimizer
_STATS = {"steps": 0, "updates": 0, "warmup_steps": 0, "recomputations": 0, "failures": 0, "last_reason": "",
          "skipped": 0, "last_skip_reason": "", "plateau_reductions": 0}


def _finite(*tensors: Tensor) -> bool:
    """Whether every entry is finite, judged by the tensors' 2-norms (one fused reduction, one sync).

    A NaN or ±inf entry makes its tensor's norm non-finite. A norm can also overflow although every
    entry is finite (float32 entries beyond about 1e19): that counts as non-finite too, which only
    skips a step that could not have been meaningful. Per-tensor ``isfinite(t).all()`` costs about
    15× more (3 ms against 0.2 ms per check for the 1M-parameter MLP, one thread), which was a third
    of a GroupedNewton step.
    """
    if not tensors:
        return True
    norms = torch._foreach_norm([t.detach() for t in tensors])
    return bool(torch.isfinite(torch.stack([n.to(tensors[0].device) for n in norms])).all())


class GroupedNewton:
    """GroupedNewton: per-group learning rates from the Newton summary of a base direction.

    ``step(inputs, targets)`` takes the training batch (the summaries re-run the network). The
    summaries are computed on batches of ``summary_data`` (constructor argument or
    ``set_summary_data``); without it, on the training batch itself (then g_bar is the exact
    directional derivative of the batch loss that u is applied to). BatchNorm in training mode
    normalises the summary batch with its own statistics (what phi means there); the summary passes
    leave the running statistics unchanged, so only the training pass updates them.

    Args:
        model: the network; its trainable parameters are updated in place.
        loss: a name from ``curvlab.losses.LOSSES`` (``"cross_entropy"`` on logits, ``"mse"``, ...).
        config: a ``GroupedNewtonConfig`` or its dict; default ``GroupedNewtonConfig()``.
        summary_data: optional (inputs, targets) from which the summary batches are drawn.
        **overrides: fields of ``GroupedNewtonConfig`` replacing the config's.

    Attributes:
        stats: counters, JSON-ready: ``steps``, ``updates`` (steps that moved the network),
            ``warmup_steps``, ``recomputations`` (estimates folded into the averages), ``failures``
            (solver failures and non-finite summaries) with ``last_reason``, ``skipped`` (non-finite
            loss, gradient, direction or step; parameters untouched) with ``last_skip_reason``,
            ``plateau_reductions``.
        history: one dict per recomputation, JSON-ready: ``step`` (1-based), ``ok``, ``reason``,
            ``warmup``, ``loss`` (summary batch), ``g``, ``H`` (raw, as nested lists), ``H_normalised``
            (H_st / sqrt(|H_ss H_tt|)), ``d3`` (the current estimate, before averaging), ``eta`` (the
            solver's rates from the averaged model, None on failure), ``radius`` (||D eta||) and
            ``lrs`` (the rates applied from then on, lambda_1 max(eta, 0)).
        partition: the ``Partition`` (groups of parameter names and their labels).

    Raises:
        ValueError: a model that is not an ``nn.Module`` or has no trainable parameters, an unknown
            loss, an invalid partition or hyperparameter (named).
        TypeError: an override that is not a field.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
        >>> x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        >>> opt = GroupedNewton(model, "cross_entropy", damping=0.5, period=1, warmup=0)
        >>> losses = [opt.step(x, y) for _ in range(20)]
        >>> losses[-1] < losses[0], len(opt.history), opt.partition.labels[0]
        (True, 20, '0.weight')
    """

    def __init__(self, model: nn.Module, loss: str,
                 config: Union[GroupedNewtonConfig, Mapping[str, Any], None] = None, *,
                 summary_data: Optional[tuple[InputsLike, Tensor]] = None, **overrides: Any):
        config, self._names, self._loss_fn = setup(GroupedNewtonConfig, model, loss, config, overrides)
        self.model, self.loss, self.config = model, loss, config
        self.partition = make_partition(model, config.partition)
        self._groups = [tuple(group) for group in self.partition.names]
        self.direction = self._new_direction()
        self._step = 0
        self._damping = config.damping
        self._eta: Optional[Tensor] = None                    # (S,) float64 rate state
        self._averages: dict[str, Optional[Estimate]] = {}
        self._plateau = {"best": math.inf, "bad_epochs": 0}
        self._summary: Optional[_SummaryBatches] = None
        self.stats: dict[str, Any] = dict(_STATS)
        self.history: list[dict[str, Any]] = []
        if summary_data is not None:
            self.set_summary_data(*summary_data)

    def _new_direction(self):
        c = self.config
        return make_direction(c.direction, momentum=c.momentum, dampening=c.dampening, nesterov=c.nesterov,
                              betas=c.betas, eps=c.eps)

    # ---------------------------------------------------------------------------------- accessors
    @property
    def num_groups(self) -> int:
        """S, the number of groups."""
        return len(self._groups)

    @property
    def damping(self) -> float:
        """The current lambda_1 (the configured one, reduced by the plateau rule)."""
        return self._damping

    @property
    def lrs(self) -> list[float]:
        """The per-group rates applied at the next step, in the partition's order."""
        return applied_rates(self._eta, self._damping, self.config.remove_negative, self.num_groups).tolist()

    @property
    def step_count(self) -> int:
        """Number of steps taken so far (including skipped and warm-up steps)."""
        return self._step

    def hyperparameters(self) -> dict[str, Any]:
        """The loss and every hyperparameter, for a run record."""
        return {"loss": self.loss, **self.config.as_dict()}

    def set_summary_data(self, inputs: InputsLike, targets: Tensor) -> None:
        """Draw the summary batches from (inputs, targets) from now on (a new pass, seeded by ``seed``).

        Raises:
            ValueError: empty data or a mismatch in the number of rows.
        """
        c = self.config
        self._summary = _SummaryBatches(inputs, targets, c.summary_batch_size, c.summary_shuffle, c.seed)

    # ---------------------------------------------------------------------------------- the step
    def step(self, inputs: InputsLike, targets: Tensor) -> float:
        """One step on the training batch; returns its loss (before the update).

        A non-finite loss, gradient, direction or step leaves the parameters (and the direction's
        state) as they were and is counted in ``stats["skipped"]``.
        """
        c = self.config
        t = self._step = self._step + 1
        self.stats["steps"] = t
        live = dict(self.model.named_parameters())
        params = [live[n] for n in self._names]
        with torch.enable_grad():
            loss = self._loss_fn(self.model(*_as_tuple(inputs)), targets)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        value = float(loss.detach())
        # a parameter the loss does not reach has gradient 0 (and so direction 0)
        grads = {n: torch.zeros_like(p) if g is None else g for n, p, g in zip(self._names, params, grads)}
        if not (math.isfinite(value) and _finite(*grads.values())):
            return self._skip("non-finite loss or gradient", value)
        u, pending = self.direction.propose(grads)
        if not _finite(*u.values()):
            return self._skip("non-finite direction", value)
        self.direction.commit(pending)
        if (t - 1) % c.period == 0:
            self._recompute(t, u, inputs, targets)
        if t - 1 < c.warmup * c.period:
            self.stats["warmup_steps"] += 1
            return value
        self._apply(live, u, value)
        return value

    def _skip(self, reason: str, value: float) -> float:
        self.stats["skipped"] += 1
        self.stats["last_skip_reason"] = reason
        return value

    def _apply(self, live: Mapping[str, Tensor], u: Mapping[str, Tensor], value: float) -> None:
        """theta_s <- theta_s - lr_s u_s for every group, all or nothing (finite or skipped)."""
        lrs = applied_rates(self._eta, self._damping, self.config.remove_negative, self.num_groups).tolist()
        new = {}
        with torch.no_grad():
            for group, lr in zip(self._groups, lrs):
                if lr != 0:
                    for name in group:
                        new[name] = torch.add(live[name], u[name], alpha=-lr)
            if not _finite(*new.values()):
                self._skip("non-finite step", value)
                return
            for name, tensor in new.items():
                live[name].copy_(tensor)
        self.stats["updates"] += 1

    def _recompute(self, t: int, u: Mapping[str, Tensor], inputs: InputsLike, targets: Tensor) -> None:
        """Summaries on the next summary batch -> averages -> solve -> the rate state."""
        c = self.config
        if self._summary is not None:
            x, y = self._summary.next(default_size=int(targets.shape[0]) if targets.dim() > 0 else 1)
        else:
            x, y = inputs, targets
        s = summaries(self.model, self.loss, x, y, u, self.partition, route=c.summary_route,
                      order3=c.regularization == "cubic", diagonal=c.diagonal)
        g, H, d3 = (q.detach().to(dtype=torch.float64, device="cpu") for q in (s.g, s.H, s.d3))
        if c.diagonal:
            H = torch.diag(H.diagonal())
        entry: dict[str, Any] = {"step": t, "warmup": t - 1 < c.warmup * c.period, "loss": float(s.loss),
                                 "g": g.tolist(), "H": H.tolist(), "H_normalised": normalised(H).tolist(),
                                 "d3": d3.tolist(), "eta": None, "radius": math.nan}
        if not _finite(g, H, d3):
            self._fail(entry, "non-finite summaries")
            return
        estimate = (g, H, d3.abs().pow(1.0 / 3.0))          # D = |D3|^(1/3) is what is averaged
        n = self.stats["recomputations"]
        self.stats["recomputations"] = n + 1
        if c.averaging == "uniform":
            used, self._averages = uniform_average(self._averages, n, estimate, c.avg_period)
        elif c.averaging == "ema":
            used, self._averages = ema_average(self._averages, estimate, c.ema)
        else:
            used = estimate
        g_used, H_used, D_used = used
        solution = solve_learning_rates(g_used, H_used, D_used ** 3, damping_int=c.damping_int,
                                        regularization=c.regularization, ridge=c.ridge, threshold=c.threshold)
        if not solution.ok or solution.eta is None or not _finite(solution.eta):
            self._fail(entry, solution.reason or "non-finite rates")
            return
        eta = solution.eta.detach().to(dtype=torch.float64, device="cpu")
        self._eta = next_rates(self._eta, eta, lr_ema=c.lr_ema, remove_negative=c.remove_negative,
                               maintain_true_lrs=c.maintain_true_lrs)
        entry.update(ok=True, reason="", eta=eta.tolist(), radius=float(solution.radius), lrs=self.lrs)
        self.history.append(entry)

    def _fail(self, entry: dict[str, Any], reason: str) -> None:
        """Keep the previous rates; count and log the failure."""
        self.stats["failures"] += 1
        self.stats["last_reason"] = reason
        entry.update(ok=False, reason=reason, lrs=self.lrs)
        self.history.append(entry)

    # ---------------------------------------------------------------------------------- plateau
    def epoch_end(self, mean_loss: float) -> float:
        """The plateau rule on the epoch's mean training loss; returns lambda_1 for the next epoch.

        Without ``config.plateau`` nothing changes. A non-finite mean loss counts as no improvement.
        """
        rule = self.config.plateau
        if rule is None:
            return self._damping
        mean_loss = float(mean_loss)
        if math.isfinite(mean_loss) and mean_loss < self._plateau["best"] * (1 - rule.threshold):
            self._plateau = {"best": mean_loss, "bad_epochs": 0}
        else:
            self._plateau["bad_epochs"] += 1
        if self._plateau["bad_epochs"] > rule.patience:
            # lr = lambda_1 eta: reducing lambda_1 reduces the current rates too
            self._damping *= rule.factor
            self._plateau["bad_epochs"] = 0
            self.stats["plateau_reductions"] += 1
        return self._damping

    # ---------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (with the model's own state_dict); copies.

        ``config`` and ``loss`` are stored for the record; ``load_state_dict`` does not read them.
        """
        return {"step": self._step, "damping": self._damping,
                "eta": None if self._eta is None else self._eta.clone(),
                "direction": self.direction.state_dict(),
                "averages": {k: None if v is None else tuple(x.clone() for x in v)
                             for k, v in self._averages.items()},
                "plateau": dict(self._plateau),
                "summary_batches": None if self._summary is None else self._summary.state_dict(),
                "stats": dict(self.stats), "history": copy.deepcopy(self.history),
                "loss": self.loss, "config": self.config.as_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output; everything is checked before anything is assigned.

        The summary data must be set (``set_summary_data``) before a state that has a summary-batch
        position is loaded.

        Raises:
            ValueError: an invalid or missing entry (named).
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        missing = {"step", "damping", "eta", "direction", "averages", "plateau", "summary_batches", "stats",
                   "history"} - set(state)
        if missing:
            raise ValueError(f"state dict lacks {sorted(missing)}")
        S = self.num_groups
        step, damping, eta = state["step"], state["damping"], state["eta"]
        if not (_is_int(step) and step >= 0):
            raise ValueError(f"step in the state dict must be an int >= 0, got {step!r}")
        if not (_is_real(damping) and damping > 0):
            raise ValueError(f"damping in the state dict must be a finite number > 0, got {damping!r}")
        if eta is not None and not (isinstance(eta, Tensor) and eta.dtype == torch.float64
                                    and eta.shape == (S,) and _finite(eta)):
            raise ValueError(f"eta in the state dict must be None or a finite float64 tensor of {S} rates")
        direction = self._new_direction()
        try:
            direction.load_state_dict(state["direction"])
        except ValueError as error:
            raise ValueError(f"direction in the state dict: {error}") from None
        self._check_direction_state(direction.state_dict())
        averages = self._checked_averages(state["averages"])
        plateau = state["plateau"]
        if not (isinstance(plateau, Mapping) and set(plateau) == {"best", "bad_epochs"}
                and isinstance(plateau["best"], numbers.Real) and not math.isnan(plateau["best"])
                and _is_int(plateau["bad_epochs"]) and plateau["bad_epochs"] >= 0):
            raise ValueError("plateau in the state dict must be {'best': number, 'bad_epochs': int >= 0}")
        batches = state["summary_batches"]
        if batches is not None:
            if self._summary is None:
                raise ValueError("summary_batches in the state dict, but no summary data is set "
                                 "(call set_summary_data first)")
            self._summary.check_state(batches)
        stats, history = state["stats"], state["history"]
        if not (isinstance(stats, Mapping) and set(stats) == set(_STATS)):
            raise ValueError(f"stats in the state dict must have the entries {sorted(_STATS)}")
        if not (isinstance(history, list) and all(isinstance(h, Mapping) for h in history)):
            raise ValueError("history in the state dict must be a list of dicts")
        # all checked: assign
        self._step, self._damping = int(step), float(damping)
        self._eta = None if eta is None else eta.clone()
        self.direction, self._averages = direction, averages
        self._plateau = {"best": float(plateau["best"]), "bad_epochs": int(plateau["bad_epochs"])}
        if batches is not None:
            self._summary.load_state_dict(batches)
        self.stats, self.history = dict(stats), copy.deepcopy(history)

    def _check_direction_state(self, state: Mapping[str, Any]) -> None:
        """Every tensor dict of the direction's state is keyed by trainable names with their shapes."""
        shapes = {n: p.shape for n, p in self.model.named_parameters() if p.requires_grad}
        for entry, value in state.items():
            if isinstance(value, Mapping):
                for name, tensor in value.items():
                    if name not in shapes or tensor.shape != shapes[name]:
                        raise ValueError(f"direction.{entry}[{name!r}] in the state dict does not match a "
                                         "trainable parameter of the model")

    def _checked_averages(self, averages: Any) -> dict[str, Optional[Estimate]]:
        allowed = {"uniform": {"use", "up"}, "ema": {"ema"}, None: set()}[self.config.averaging]
        S = self.num_groups
        if not (isinstance(averages, Mapping) and set(averages) <= allowed):
            raise ValueError(f"averages in the state dict must have entries among {sorted(allowed)} for "
                             f"averaging={self.config.averaging!r}")
        checked = {}
        for key, value in averages.items():
            if value is not None and not (
                    isinstance(value, (tuple, list)) and len(value) == 3
                    and all(isinstance(x, Tensor) and x.dtype == torch.float64 for x in value)
                    and tuple(value[0].shape) == (S,) and tuple(value[1].shape) == (S, S)
                    and tuple(value[2].shape) == (S,) and _finite(*value)):
                raise ValueError(f"averages[{key!r}] in the state dict must be None or finite float64 "
                                 f"(g ({S},), H ({S}, {S}), D ({S},))")
            checked[key] = None if value is None else tuple(x.clone() for x in value)
        return checked
