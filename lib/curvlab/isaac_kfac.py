"""The paper's comparison directions: ζ with finite λ_g (eq. 17-20) and the K-FAC step.

Both use an output-side curvature factor built from *sampled-label* output gradients: a second
backward pass of the same (mean) loss with labels ŷ drawn from the model's own predictive
distribution (softmax for cross-entropy, a Gaussian around the prediction for MSE), so that the
expected outer product of these gradients is the loss Hessian, i.e. the GGN (Fisher) factor.

For one linear layer with G (b, m), A (b, n) and the sampled gradients Gs (R, m), R = r·b (r draws
stacked; each draw's rows already hold the loss's 1/b, like G):

    S_a = AᵀA / b                  (n, n)   mean input second moment
    S_g = (b²/R) Gsᵀ Gs            (m, m)   mean over draws and rows of per-example outer products
    ζ    = λ_g (S_g + λ_g I)⁻¹ · Gᵀ A · λ_a (S_a + λ_a I)⁻¹          (eq. 18)
    K-FAC = (S_g + λ_g I)⁻¹ · Gᵀ A · (S_a + λ_a I)⁻¹  = ζ / (λ_g λ_a)   (damped K-FAC, Thm 1(i))

λ_g → ∞ turns ζ into ζ* (``curvlab.isaac``); λ_g, λ_a → ∞ gives the plain gradient. ζ keeps the
scale of the gradient; the K-FAC step does not (its learning rate must be tuned separately).
Everything is rebuilt from the current batch at every step: no running averages and no amortised
inversion (the paper's K-FAC numbers came from BackPACK; this is the same estimator, stateless).

``zeta_weight_gradient`` uses the Woodbury forms of Theorem 1 (an R×R system when R < m) and is
cheap; ``kfac_weight_gradient`` inverts the dense m×m and n×n factors, as a K-FAC implementation
does. Mathematically ζ = λ_g λ_a · K-FAC, which the tests check. The Woodbury form
``I − Gsᵀ(…)⁻¹Gs`` cancels digits when λ_g ≪ ‖S_g‖: in float32 expect relative errors near
1e-7·‖S_g‖/λ_g, so use float64 for λ_g below about 1e-4.

Training loop (any model; the chosen layers stay plain ``nn.Linear``)::

    pre = KroneckerPreconditioner(model, la=0.1, lg=0.1, layers=range(1, 6), method="zeta",
                                  loss="cross_entropy")
    for x, y in batches:
        optimizer.zero_grad()
        output = model(x)                       # forward hooks record each chosen layer's A
        pre.backward(F.cross_entropy(output, y), output)   # instead of loss.backward()
        optimizer.step()
    pre.remove()                                # or use ``with KroneckerPreconditioner(...)``
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from .isaac import check_damping, isaac_weight_gradient, select_linear_layers, solve_spd
from .losses import check_loss, loss_function, sample_targets

__all__ = ["zeta_weight_gradient", "kfac_weight_gradient", "sampled_output_gradients",
           "KroneckerPreconditioner"]


def _output_factor_root(sampled_grad_output: Tensor, b: int) -> Tensor:
    """U (R, m) with UᵀU = S_g = (b²/R) Gsᵀ Gs: the sampled gradients rescaled to per-example size."""
    if sampled_grad_output.dim() != 2:
        raise ValueError(f"sampled_grad_output must be (R, m), got {tuple(sampled_grad_output.shape)}")
    return sampled_grad_output * (b / math.sqrt(sampled_grad_output.shape[0]))


def zeta_weight_gradient(grad_output: Tensor, inputs: Tensor, sampled_grad_output: Tensor,
                         la: float, lg: float, *, form: str = "auto") -> Tensor:
    """ζ (m, n) = λ_g (S_g + λ_g I)⁻¹ Gᵀ A λ_a (S_a + λ_a I)⁻¹ (module docstring for S_g, S_a).

    The input side is ζ* (:func:`curvlab.isaac.isaac_weight_gradient`, b×b or n×n system). The
    output side is applied to that (m, n) result with the cheaper of
    ``"sample"``: Z − Uᵀ(λ_g I_R + UUᵀ)⁻¹ U Z (R×R system, Woodbury) and ``"output"``:
    (I_m + UᵀU/λ_g)⁻¹ Z (m×m system); ``"auto"`` picks ``"sample"`` when R < m.
    ``lg`` (λ_g) damps the output factor as ``la`` damps the input one; lg → ∞ gives ζ*.
    """
    lg = check_damping(lg, "lg")
    if form not in ("auto", "sample", "output"):
        raise ValueError(f"form must be 'auto', 'sample' or 'output', got {form!r}")
    Z = isaac_weight_gradient(grad_output, inputs, la)                   # (m, n)
    U = _output_factor_root(sampled_grad_output, inputs.shape[0])        # (R, m)
    R, m = U.shape
    if m != Z.shape[0]:
        raise ValueError(f"sampled_grad_output has {m} columns, grad_output {Z.shape[0]}")
    if form == "auto":
        form = "sample" if R < m else "output"
    if form == "sample":
        system = torch.addmm(torch.eye(R, dtype=U.dtype, device=U.device), U, U.T, beta=lg)
        return Z - U.T @ solve_spd(system, U @ Z)                        # (m, R) @ (R, n)
    system = torch.addmm(torch.eye(m, dtype=U.dtype, device=U.device), U.T, U, alpha=1 / lg)
    return solve_spd(system, Z).contiguous()                             # (m, m)⁻¹ (m, n)


def kfac_weight_gradient(grad_output: Tensor, inputs: Tensor, sampled_grad_output: Tensor,
                         la: float, lg: float) -> Tensor:
    """Damped K-FAC step (m, n) = (S_g + λ_g I_m)⁻¹ Gᵀ A (S_a + λ_a I_n)⁻¹, with dense factors.

    Cost O(bn² + Rm² + m³ + n³ + mn(m + n)): the K-FAC baseline of the paper's comparisons. As
    λ_g, λ_a → 0 it tends to the undamped K-FAC Gauss-Newton step (Theorem 1(i)); the smallest
    stable λ the paper found for K-FAC is about 0.01-0.001. Equals ζ / (λ_g λ_a).
    """
    la, lg = check_damping(la, "la"), check_damping(lg, "lg")
    G, A = grad_output, inputs
    if G.dim() != 2 or A.dim() != 2 or G.shape[0] != A.shape[0]:
        raise ValueError("need grad_output (b, m) and inputs (b, n) with the same b, got "
                         f"{tuple(G.shape)} and {tuple(A.shape)}")
    b, n = A.shape
    U = _output_factor_root(sampled_grad_output, b)                      # (R, m)
    m = U.shape[1]
    s_g = torch.addmm(torch.eye(m, dtype=U.dtype, device=U.device), U.T, U, beta=lg)
    s_a = torch.addmm(torch.eye(n, dtype=A.dtype, device=A.device), A.T, A, beta=la, alpha=1 / b)
    X = solve_spd(s_g, G.T @ A)                                          # (m, n)
    return solve_spd(s_a, X, left=False).contiguous()                    # X (S_a + λ_a I)⁻¹


def sampled_output_gradients(output: Tensor, tensors: list[Tensor], loss: str, samples: int = 1,
                             generator: torch.Generator | None = None) -> list[Tensor]:
    """Gradients w.r.t. ``tensors`` of the batch ``loss`` with targets sampled from the model.

    ``output`` (b, k) is the network output the loss is computed from; ``loss`` any name of
    :data:`curvlab.losses.LOSSES` (every one a mean over the batch). Draws ``samples`` target sets
    ŷ ~ p(y | output) with :func:`curvlab.losses.sample_targets` and back-propagates each (graph
    retained), so the expected outer product of the per-example gradients equals the per-example
    loss Hessian w.r.t. ``output`` (the GGN):

    - ``"cross_entropy"``: ŷ ~ Categorical(softmax(output)).
    - ``"mse"`` (``F.mse_loss``, mean over all b·d elements): ŷ = output + σ ε, ε ~ N(0, I),
      σ² = d/2, because the per-example loss (1/d)‖f − y‖² has Hessian (2/d) I (other squared
      errors: σ² = 1/(2 c) for the per-example loss c‖f − y‖²).

    Returns, per tensor (b, ..., m), the ``samples`` gradients stacked as rows: (samples·b·..., m).
    """
    check_loss(loss)
    loss_fn = loss_function(loss)
    per_draw = [torch.autograd.grad(loss_fn(output, target), tensors, retain_graph=True)
                for target in sample_targets(loss, output, samples, generator)]
    return [torch.cat([draw[i].reshape(-1, t.shape[-1]) for draw in per_draw])
            for i, t in enumerate(tensors)]


class KroneckerPreconditioner:
    """Replace the weight gradient of chosen ``nn.Linear`` layers by ζ or by the K-FAC step.

    ``layers``: 1-based positions among the model's ``nn.Linear`` modules or module names (as in
    :func:`curvlab.isaac.apply_isaac`). ``method``: ``"zeta"`` (:func:`zeta_weight_gradient`) or
    ``"kfac"`` (:func:`kfac_weight_gradient`). ``loss``: the training loss, which fixes how labels are
    sampled (see :func:`sampled_output_gradients`); the loss passed to :meth:`backward` must be its
    mean over the batch. ``samples``: label draws r per example (one extra backward each; the paper
    does not state r, default 1). ``generator`` makes the draws reproducible.

    Forward hooks record each chosen layer's input and output whenever grad is enabled.
    :meth:`backward` then (1) runs the r sampled-label backward passes to the chosen layers'
    outputs, (2) back-propagates the loss itself, accumulating exact gradients into ``.grad`` of
    every other parameter (biases included: not preconditioned) and skipping the chosen weights'
    plain gradients, and (3) adds the preconditioned direction to each chosen weight's ``.grad``.
    Call ``optimizer.zero_grad()`` every step, as usual. Layers must see 2-D inputs (one row per
    example) and run once per forward.
    """

    def __init__(self, model: nn.Module, la: float, lg: float,
                 layers: int | str | Iterable[int | str], *, method: str = "zeta",
                 loss: str = "cross_entropy", samples: int = 1,
                 generator: torch.Generator | None = None):
        self.la, self.lg = check_damping(la, "la"), check_damping(lg, "lg")
        if method not in ("zeta", "kfac"):
            raise ValueError(f"method must be 'zeta' or 'kfac', got {method!r}")
        check_loss(loss)
        if int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        self.model, self.method, self.loss = model, method, loss
        self.samples, self.generator = int(samples), generator
        self.layers = select_linear_layers(model, layers)
        self._records: dict[str, list[tuple[Tensor, Tensor]]] = {}
        self._handles = [mod.register_forward_hook(self._recorder(name)) for name, mod in self.layers]

    def _recorder(self, name: str):
        def hook(module, inputs, output):
            if torch.is_grad_enabled():
                self._records.setdefault(name, []).append((inputs[0].detach(), output))
        return hook

    def backward(self, loss: Tensor, output: Tensor) -> None:
        """Use instead of ``loss.backward()``.

        ``loss`` (scalar, mean over the batch) is computed from the model ``output`` of the last
        forward pass.
        """
        records = self._records
        self._records = {}
        names = [name for name, _ in self.layers]
        for name in names:
            if len(records.get(name, ())) != 1:
                raise RuntimeError(f"layer {name!r} ran {len(records.get(name, ()))} times with grad "
                                   "enabled since the last backward; it must run exactly once")
        inputs = [records[name][0][0] for name in names]
        outputs = [records[name][0][1] for name in names]
        for name, a in zip(names, inputs):
            if a.dim() != 2:
                raise ValueError(f"layer {name!r} got input {tuple(a.shape)}; needs (b, n)")
        sampled = sampled_output_gradients(output, outputs, self.loss, self.samples, self.generator)
        chosen = {id(mod.weight) for _, mod in self.layers}
        others = [p for p in self.model.parameters() if p.requires_grad and id(p) not in chosen]
        grads = torch.autograd.grad(loss, outputs + others, allow_unused=True)
        for p, g in zip(others, grads[len(outputs):]):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        direction = zeta_weight_gradient if self.method == "zeta" else kfac_weight_gradient
        for (name, mod), a, g, gs in zip(self.layers, inputs, grads, sampled):
            if g is None:
                raise RuntimeError(f"the loss does not depend on the output of layer {name!r}")
            if not mod.weight.requires_grad:
                continue
            step = direction(g.reshape(-1, mod.out_features), a, gs, self.la, self.lg)
            mod.weight.grad = step if mod.weight.grad is None else mod.weight.grad + step

    def remove(self) -> None:
        """Remove the forward hooks; the model is left as it was."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._records = {}

    def __enter__(self) -> "KroneckerPreconditioner":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
