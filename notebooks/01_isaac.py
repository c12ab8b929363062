# %% [markdown]
# # 01 · ISAAC Newton: input-based approximate curvature
#
# F. Petersen, T. Sutter, C. Borgelt, D. Huh, H. Kuehne, Y. Sun, O. Deussen. *ISAAC Newton:
# Input-based Approximate Curvature for Newton's Method.* ICLR 2023
# ([OpenReview 0paCJSFW7j](https://openreview.net/forum?id=0paCJSFW7j),
# [arXiv 2305.00604](https://arxiv.org/abs/2305.00604)); reference code `Felix-Petersen/isaac`
# (commit `04b1245`).
#
# **The claim.** K-FAC preconditions a layer's gradient with two Kronecker factors, one built from
# the layer's inputs and one from its output gradients. If each factor gets its own Tikhonov damping
# (λ_a for the inputs, λ_g for the outputs) and the output damping is sent to infinity, what remains
# is a preconditioner built **from the layer inputs alone** (ζ\*, Theorem 3). It needs no extra
# backward pass and, in the mini-batch regime (batch b ≪ width n), only a b×b solve per layer, so it
# costs barely more than a gradient step; the paper reports that it trains like K-FAC per step on
# MNIST MLPs and auto-encoders, helps when placed on a subset of layers (except the last ones only),
# helps the last layer of a ResNet-18 on CIFAR-10 and BERT fine-tuning on GLUE.
#
# This notebook derives ζ\* step by step, checks every identity numerically, explains the
# implementation in `curvlab.isaac`, and re-runs the paper's experiments. At `SCALE = "ci"` every
# experiment is a reduced but faithful version (real MNIST and Fashion-MNIST, the paper's
# architectures, fewer steps, a training subset) that runs on a 2-core CPU in a few minutes; the
# CIFAR-10 experiment uses the labelled stand-in `fashion_mnist_32` and a small CNN. At
# `SCALE = "paper"` the same code runs the paper's settings (GPU hours for some).
#
# Data preprocessing everywhere: images are the raw `uint8` pixels divided by 255, as `float32`
# (the reference script's `ToTensor`, no normalisation).

# %% tags=["parameters"]
SCALE = "ci"      # "ci" (2-core CPU, minutes) or "paper" (the paper's settings)
SEED = 0
DEVICE = "auto"

# %%
import functools
import importlib.util
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from curvlab import data, experiment, isaac, isaac_kfac, models, plotting, training

plotting.set_theme()
experiment.set_threads()
PAPER, NB = "isaac", "01_isaac"
INF = float("inf")
LR_GRID = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]       # the paper's learning-rate grid (App. B)
DECADES = lambda lo, hi: [float(10.0 ** k) for k in range(lo, hi + 1)]

# Every size, budget and grid, per scale. "steps" budgets at ci (deterministic); epochs at paper scale.
CONFIG = {
    "ci": {
        "n_train": 10_000, "n_test": 2_000, "n_eval": 2_000,   # MNIST subsets; eval = train-loss subset
        # Figures 5 / 9: ζ* on layer subsets of the 5×400 MLP (reference example: la 10, batch 100)
        "fig5": {"width": 400, "batch": 100, "budget": {"steps": 200}, "eval_every": 50, "la": 10.0,
                 "lrs": [1.0, 0.3, 0.1]},
        # Figure 1: ζ* column (λ_g = ∞) and GD over λ_a decades, width 100, batch 60, lr per cell
        "fig1": {"width": 100, "batch": 60, "budget": {"steps": 250}, "las": DECADES(-3, 3),
                 "lgs": [INF], "lrs": LR_GRID, "zeta_lgs": [1e-2, 1.0, 1e2],
                 "zeta_las": [1e-2, 1.0, 1e2], "zeta_lrs": [1.0, 0.3]},
        # Figure 4: as Figure 1 but width 400 and Adam
        "fig4": {"width": 400, "batch": 60, "budget": {"steps": 200}, "las": DECADES(-3, 3)[::2],
                 "lrs": [0.003, 0.001]},
        # Figures 2 / 7: the 784-1000-500-30-500-1000-784 auto-encoder, batch 60
        "fig2": {"batch": 60, "budget": {"steps": 120}, "eval_every": 20, "lams": [0.1, 0.01],
                 "lrs": [1.0, 0.3, 0.1], "extra_lrs": {"momentum": [0.1, 0.03], "adam": [0.001, 0.0003]},
                 "big_batch": None},
        # Figure 3: auto-encoder (λ_g, λ_a) grids on MNIST and Fashion-MNIST, one lr per sector
        "fig3": {"batch": 60, "budget": {"steps": 100}, "las": [0.01, 0.1, 1.0, 10.0],
                 "lgs": [1e-3, INF], "datasets": ["mnist", "fashion_mnist"]},
        # Table 2: settings per scale in benchmarks/isaac.py (TABLE2), shared with its --record
        # Figures 6 / 8: ζ* on the last layer of a CNN; CIFAR-10 stand-in and a small CNN at ci
        "fig6": {"dataset": "fashion_mnist_32", "model": "sgn_arch_4", "n_train": 5_000,
                 "n_test": 1_000, "n_eval": 1_000, "batch": 100, "budget": {"epochs": 2}, "eval_every": 50,
                 "lrs": [1.0, 0.3, 0.1], "la": 1.0, "seeds": [0]},
    },
    "paper": {
        "n_train": 60_000, "n_test": 10_000, "n_eval": 60_000,
        "fig5": {"width": 400, "batch": 100, "budget": {"epochs": 30}, "eval_every": None, "la": 10.0,
                 "lrs": LR_GRID},
        "fig1": {"width": 400, "batch": 60, "budget": {"epochs": 40}, "las": DECADES(-6, 6),
                 "lgs": DECADES(-6, 6) + [INF], "lrs": LR_GRID, "zeta_lgs": [], "zeta_las": [],
                 "zeta_lrs": []},
        "fig4": {"width": 400, "batch": 60, "budget": {"epochs": 40}, "las": DECADES(-6, 6),
                 "lrs": LR_GRID},
        "fig2": {"batch": 60, "budget": {"epochs": 40}, "eval_every": None, "lams": [0.1, 0.01],
                 "lrs": LR_GRID, "extra_lrs": {"momentum": LR_GRID, "adam": LR_GRID},
                 "big_batch": 600},
        "fig3": {"batch": 60, "budget": {"epochs": 10}, "las": DECADES(-6, 6),
                 "lgs": DECADES(-6, 6) + [INF], "datasets": ["mnist", "fashion_mnist"]},
        "fig6": {"dataset": "cifar10" if data.available("cifar10") else "fashion_mnist_32",
                 "model": "resnet18", "n_train": 50_000, "n_test": 10_000, "batch": 100,
                 "n_eval": 10_000, "budget": {"epochs": 50}, "eval_every": None, "lrs": [1.0, 0.3, 0.1, 0.03, 0.01],
                 "la": 1.0, "seeds": [0, 1, 2, 3, 4]},
    },
}[SCALE]
print(f"scale {SCALE}: MNIST subsets {CONFIG['n_train']} train / {CONFIG['n_test']} test, "
      f"torch threads {torch.get_num_threads()}")

# %% [markdown]
# At paper scale Figure 1 uses width 400 only here (the paper also shows 100 and 1600: set `width`),
# and the ResNet epochs (50), λ_a of the last layer (1) and the auto-encoder's batch (60) are our
# choices where the paper's values are only in its PDF.

# %% [markdown]
# ## 1. Derivation
#
# ### 1.1 From regularised Gauss–Newton to Kronecker factors
#
# A network of linear layers z = a Wᵀ (row vectors; the code's W is m×n) with activations between
# them. A Tikhonov-regularised Gauss–Newton step is
#
# $$\theta' = \theta - \eta\,(G + \lambda I)^{-1}\nabla_\theta \mathcal L ,$$
#
# with G the generalised Gauss–Newton (GGN) matrix $\mathbb E[J^\top H_\ell J]$. For one layer with
# input a ∈ ℝⁿ and output z ∈ ℝᵐ, the Jacobian of z with respect to vec(W) is $I_m \otimes a$, so the
# layer's GGN block is
#
# $$G_W = \mathbb E\big[(\bar g^\top \bar g) \otimes (a^\top a)\big],\qquad
#   \bar g = (\nabla^2_f \ell)^{1/2} J_z f ,$$
#
# where ḡ is estimated by "sampled-label" gradients: back-propagate the loss with labels ŷ drawn
# from the model's own predictive distribution (one extra backward pass). K-FAC replaces the
# expectation of the Kronecker product by the Kronecker product of expectations, estimated on the
# batch of b examples:
#
# $$G_W \approx S_g \otimes S_a,\qquad S_g = \tfrac1b \bar{\bar g}^\top \bar{\bar g}\ (m\times m),
#   \quad S_a = \tfrac1b a^\top a\ (n\times n),$$
#
# with ā (b×n) the batch of inputs and $\bar{\bar g}$ (b×m) the batch of sampled output gradients.
#
# ### 1.2 Two dampings (eq. 17–18)
#
# $(S_g\otimes S_a + \lambda I)^{-1}$ does not factorise, but damping each factor does. With λ_g on
# the output side and λ_a on the input side, and the factor λ_g λ_a that keeps the step at the scale
# of the gradient,
#
# $$\zeta = \lambda_g\lambda_a\,(S_g + \lambda_g I)^{-1}\otimes(S_a + \lambda_a I)^{-1}\,
#   \nabla_W\mathcal L
#   \quad\Longleftrightarrow\quad
#   \zeta_W = \underbrace{\lambda_g(S_g+\lambda_g I_m)^{-1}}_{P}\; g^\top a\;
#   \underbrace{\lambda_a(S_a+\lambda_a I_n)^{-1}}_{Q},$$
#
# where $\nabla_W\mathcal L = g^\top a$ and g (b×m) is the gradient of the (mean) loss with respect to
# z (it holds the 1/b). The update is θ' = θ − η ζ.
#
# ### 1.3 Theorem 1: the Woodbury form
#
# For $S = X^\top X/b$ with X (b×k), Woodbury gives $\lambda(S+\lambda I_k)^{-1} =
# I_k - X^\top(b\lambda I_b + XX^\top)^{-1}X$, and the push-through identity moves the input side
# inside the batch dimension:
#
# $$\zeta = \big(I_m - \bar{\bar g}^\top(b\lambda_g I_b + \bar{\bar g}\bar{\bar g}^\top)^{-1}
#   \bar{\bar g}\big)\; g^\top\; \big(I_b - (b\lambda_a I_b + a a^\top)^{-1} a a^\top\big)\; a .$$
#
# Only b×b systems appear: the extra cost is O(b²(n+m) + b³) per layer on top of the gradient's
# O(bnm). Limits: (i) as λ_g, λ_a → 0, ζ/(λ_g λ_a) → $S_g^{-1}\,g^\top a\,S_a^{-1}$, the K-FAC
# Gauss–Newton step (when the factors are invertible); (ii) as λ_g, λ_a → ∞, ζ → gᵀa, the gradient.
#
# **Theorem 2 (descent).** $\langle \zeta, \nabla_W\mathcal L\rangle =
# \mathrm{vec}(\nabla)^\top (P\otimes Q)\,\mathrm{vec}(\nabla) > 0$ for ∇ ≠ 0, because P and Q are
# symmetric positive definite for all λ_g, λ_a > 0, hence so is P ⊗ Q: −ζ is a descent direction.
#
# ### 1.4 Theorem 3: λ_g → ∞ leaves only the inputs
#
# As λ_g → ∞, P → I_m and
#
# $$\zeta^* = g^\top\big(I_b - \tfrac{1}{b\lambda_a}\big(I_b + \tfrac{1}{b\lambda_a}aa^\top\big)^{-1}
#   aa^\top\big)\,a \;=\; g^\top\big(I_b + \tfrac{1}{b\lambda_a}aa^\top\big)^{-1} a
#   \;=\; \lambda_a\, g^\top a\,(S_a + \lambda_a I_n)^{-1}.$$
#
# ζ\* needs the layer input a and the ordinary backprop gradient g, nothing else: no sampled labels,
# no second backward pass, no state. With $S_a = V\operatorname{diag}(s_j)V^\top$ it reads
# $g^\top a\,V\operatorname{diag}\!\big(\tfrac{\lambda_a}{\lambda_a+s_j}\big)V^\top$: the gradient is
# damped along high-variance input directions (a regularised input whitening; "K-FAC with an identity
# output factor", Remark 3). λ_a → ∞ gives back the gradient; small λ_a shrinks the step roughly in
# proportion to λ_a, so λ_a and the learning rate interact.
#
# **Theorem 4.** For a linear layer under the squared error ½‖z − y‖² (per example, mean over the
# batch), the loss Hessian with respect to z is I, so the GGN of W is exactly $I_m\otimes S_a$ (no
# Kronecker approximation, no sampling) and $(G + \lambda_a I)^{-1}\nabla = \zeta^*/\lambda_a$:
# ζ\* **is** the damped Gauss–Newton direction, up to the scalar λ_a. This covers linear regression and
# the last layer of any network trained with MSE.
#
# Each identity is checked below in float64 on tiny random examples.

# %%
f64 = torch.float64
gen = torch.Generator().manual_seed(SEED)
b, n, m = 8, 5, 4                       # b > n, m: both factors invertible, for the λ → 0 limit
a = torch.randn(b, n, generator=gen, dtype=f64)          # layer inputs
g = torch.randn(b, m, generator=gen, dtype=f64) / b      # dL/dz of the mean loss (holds 1/b)
gs = torch.randn(b, m, generator=gen, dtype=f64)         # sampled per-example output gradients
grad_W = g.T @ a                                         # (m, n)
S_a, S_g = a.T @ a / b, gs.T @ gs / b
I = lambda k: torch.eye(k, dtype=f64)
rel = lambda x, y: float((x - y).norm() / y.norm())


def zeta_kronecker(lg, la):
    """ζ from the dense (mn × mn) Kronecker matrix (row-major vec: (P ⊗ Q) vec X = vec(P X Qᵀ))."""
    P, Q = lg * torch.linalg.inv(S_g + lg * I(m)), la * torch.linalg.inv(S_a + la * I(n))
    return (torch.kron(P, Q) @ grad_W.reshape(-1)).reshape(m, n)


def zeta_woodbury(lg, la):
    """Theorem 1: only b × b systems."""
    left = I(m) - gs.T @ torch.linalg.solve(b * lg * I(b) + gs @ gs.T, gs)
    right = I(b) - torch.linalg.solve(b * la * I(b) + a @ a.T, a @ a.T)
    return left @ g.T @ right @ a


def zeta_star(la):
    """Theorem 3: inputs only."""
    K = a @ a.T / (b * la)
    return g.T @ (I(b) - K @ torch.linalg.inv(I(b) + K)) @ a


checks = []
for lg, la in [(0.1, 0.1), (1e-3, 10.0), (10.0, 1e-3)]:
    z = zeta_kronecker(lg, la)
    checks.append(("Theorem 1: Woodbury form = Kronecker form", lg, la, rel(zeta_woodbury(lg, la), z)))
    lib = isaac_kfac.zeta_weight_gradient(g, a, gs / b, la, lg)   # library: rows of Gs hold 1/b
    checks.append(("library zeta_weight_gradient = Kronecker form", lg, la, rel(lib, z)))
    lib_k = isaac_kfac.kfac_weight_gradient(g, a, gs / b, la, lg) * lg * la
    checks.append(("library K-FAC step × λ_g λ_a = ζ", lg, la, rel(lib_k, z)))
checks = pd.DataFrame(checks, columns=["identity", "λ_g", "λ_a", "relative error"])
print(checks.assign(**{"relative error": checks["relative error"].map(lambda v: f"{v:.0e}")})
      .to_string(index=False))
print("all below 1e-10:", bool((checks["relative error"] < 1e-10).all()))

# %% [markdown]
# Theorem 1's limits: ζ/(λ_g λ_a) approaches the undamped K-FAC step as both λ → 0, and ζ approaches
# the plain gradient as both λ → ∞ (the error falls in proportion to 1/λ and λ respectively).

# %%
kfac_undamped = torch.linalg.inv(S_g) @ grad_W @ torch.linalg.inv(S_a)
rows = []
for lam in [1e-2, 1e-4, 1e-6]:
    rows.append({"λ": f"{lam:.0e}", "‖ζ/λ² − K-FAC‖ / ‖K-FAC‖": f"{rel(zeta_kronecker(lam, lam) / lam**2, kfac_undamped):.0e}"})
for lam in [1e2, 1e4, 1e6]:
    rows.append({"λ": f"{lam:.0e}", "‖ζ − ∇‖ / ‖∇‖": f"{rel(zeta_kronecker(lam, lam), grad_W):.0e}"})
print(pd.DataFrame(rows).fillna("").to_string(index=False))

# %% [markdown]
# Theorem 2: over 2 000 random layers (including b < n, where S_a is singular) and dampings from
# 10⁻⁶ to 10⁶, ζ always has a positive inner product with the gradient; and on a small network one
# step along −ζ\* with a small learning rate lowers the loss.

# %%
cosines = []
for trial in range(2000):
    bb, nn_, mm = [int(v) for v in torch.randint(1, 12, (3,), generator=gen)]
    A_ = torch.randn(bb, nn_, generator=gen, dtype=f64)
    G_ = torch.randn(bb, mm, generator=gen, dtype=f64)
    Gs_ = torch.randn(bb, mm, generator=gen, dtype=f64)
    lg, la = [10.0 ** float(v) for v in torch.randint(-6, 7, (2,), generator=gen)]
    z = isaac_kfac.zeta_weight_gradient(G_, A_, Gs_, la, lg)
    grad_ = G_.T @ A_
    cosines.append(float((z * grad_).sum() / (z.norm() * grad_.norm())))
print(f"min cosine(ζ, ∇) over {len(cosines)} random layers > 0: {min(cosines) > 0}")

torch.manual_seed(SEED)
net = isaac.apply_isaac(models.mlp([6, 8, 8, 3]).double(), la=0.5, layers=[1, 2, 3])
xs, ys = torch.randn(16, 6, dtype=f64), torch.randint(0, 3, (16,))
loss0 = F.cross_entropy(net(xs), ys)
loss0.backward()
with torch.no_grad():
    for p in net.parameters():
        p -= 1e-3 * p.grad
print("one small step along −ζ* lowers the loss:", bool(F.cross_entropy(net(xs), ys) < loss0))

# %% [markdown]
# Theorem 3: ζ tends to ζ\* as λ_g → ∞ (error ∝ 1/λ_g), and the three forms of ζ\* (b×b, n×n, and
# the library's two code paths) agree.

# %%
rows = [{"λ_g": f"{lg:.0e}", "‖ζ − ζ*‖ / ‖ζ*‖": f"{rel(zeta_kronecker(lg, 0.3), zeta_star(0.3)):.0e}"}
        for lg in [1e2, 1e4, 1e6, 1e8]]
print(pd.DataFrame(rows).to_string(index=False))
forms = {"λ_a gᵀa (S_a + λ_a I)⁻¹": 0.3 * grad_W @ torch.linalg.inv(S_a + 0.3 * I(n)),
         "library, b×b system": isaac.isaac_weight_gradient(g, a, 0.3, form="batch"),
         "library, n×n system": isaac.isaac_weight_gradient(g, a, 0.3, form="input")}
for name, value in forms.items():
    print(f"{name:28s} = ζ* (Theorem 3 form): {rel(value, zeta_star(0.3)) < 1e-12}")


# %% [markdown]
# Theorem 4: for linear regression, and for the last layer of a network, under the half squared
# error, ζ\*/λ_a equals the damped Newton step (H + λ_a I)⁻¹∇ computed from the exact Hessian (which
# equals the GGN there). Under cross-entropy the loss Hessian is not I, and ζ\* is not the
# Gauss–Newton direction.

# %%
def newton_step_vs_isaac(features, targets, W, la, loss="half_mse"):
    """Relative distance between ζ*/la and (H + la I)⁻¹ ∇ for the last-layer weight W (m, n)."""
    bb = features.shape[0]
    def f(Wf):
        z = features @ Wf.T
        if loss == "half_mse":
            return 0.5 * ((z - targets) ** 2).sum() / bb
        return F.cross_entropy(z, targets)
    H = torch.func.hessian(f)(W).reshape(W.numel(), W.numel())
    grad = torch.func.grad(f)(W).reshape(-1)
    newton = torch.linalg.solve(H + la * torch.eye(W.numel(), dtype=f64), grad).reshape(W.shape)
    z = (features @ W.T).detach().requires_grad_(True)
    (f_z := (0.5 * ((z - targets) ** 2).sum() / bb if loss == "half_mse"
             else F.cross_entropy(z, targets))).backward()
    return rel(isaac.isaac_weight_gradient(z.grad, features, la) / la, newton)


X, Y, W0 = (torch.randn(20, 6, generator=gen, dtype=f64), torch.randn(20, 3, generator=gen, dtype=f64),
            torch.randn(3, 6, generator=gen, dtype=f64))
hidden = torch.relu(torch.randn(20, 6, generator=gen, dtype=f64) @ torch.randn(6, 12, generator=gen, dtype=f64))
W1 = torch.randn(3, 12, generator=gen, dtype=f64)
labels = torch.randint(0, 3, (20,), generator=gen)
print("linear regression, ζ*/λ_a = damped Newton:", newton_step_vs_isaac(X, Y, W0, 0.1) < 1e-10)
print("last layer of a ReLU net (b=20 > n=12), MSE:", newton_step_vs_isaac(hidden, Y, W1, 0.1) < 1e-10)
print("last layer of a ReLU net, cross-entropy: relative distance to Newton > 0.1:",
      newton_step_vs_isaac(hidden, labels, W1, 0.1, loss="ce") > 0.1)

# %% [markdown]
# ## 2. The implementation, explained
#
# `curvlab/isaac.py` holds ζ\*; `curvlab/isaac_kfac.py` the comparison directions.
#
# - **`isaac.isaac_weight_gradient(G, A, la)`** is the pure function: G (b×m) the gradient of the
#   mean loss with respect to the layer output, A (b×n) the layer input. It solves one symmetric
#   positive-definite system by Cholesky (LU fallback; never an explicit inverse), choosing the
#   smaller of two equal forms, as the reference code does:
#   - **b < n** (the mini-batch regime): `Gᵀ (I_b + AAᵀ/(b·la))⁻¹ A`, a b×b system;
#   - **b ≥ n**: `Gᵀ A (I_n + AᵀA/(b·la))⁻¹`, an n×n system.
# - **`isaac.Linear(n, m, la)`** is a drop-in `nn.Linear` (same parameters, names and
#   initialisation). Its forward is `F.linear`; its backward returns the exact input gradient G W
#   (earlier layers see true backprop) and the exact bias gradient ΣG (not preconditioned; the
#   released code sums, the paper's appendix listing averages), and replaces only the weight gradient
#   by ζ\*. The optimizer sees the modified `.grad`, so SGD, momentum and Adam work on top unchanged
#   (weight decay is not preconditioned). It is stateless: nothing is averaged over steps.
# - **`isaac.apply_isaac(model, la, layers)`** swaps chosen `nn.Linear` layers (1-based positions, as
#   in the paper's "layers {1, 3, 5}") for `isaac.Linear`, keeping the parameter objects.
#   `isaac.Conv2d` (patches as rows) and flattening of sequence inputs are extensions beyond the paper.
# - **`isaac_kfac.KroneckerPreconditioner(model, la, lg, layers, method=...)`** gives ζ (finite λ_g,
#   Woodbury form of Theorem 1) or the damped K-FAC step, from one sampled-label backward pass per
#   step; it is used for the paper's ζ and K-FAC baselines (the paper's K-FAC came from BackPACK; this
#   is the same per-batch estimator, without running averages).
#
# Checks: the reference implementation's own self-test (torch seed 0, x = randn(30, 8),
# y = randn(30, 5), `Linear(8, 5, la=0.1)`, mean MSE; the printed 4-decimal values from the
# reference), the two code paths on both sides of the b = n switch, and the unchanged input and bias
# gradients.

# %%
REFERENCE_WEIGHT_GRAD = torch.tensor([
    [0.0074, 0.0095, -0.0056, -0.0040, -0.0136, 0.0001, 0.0160, -0.0047],
    [-0.0099, -0.0106, -0.0178, 0.0148, 0.0111, -0.0037, 0.0032, -0.0133],
    [0.0030, 0.0048, 0.0138, -0.0168, 0.0078, -0.0085, -0.0059, 0.0053],
    [-0.0073, 0.0105, 0.0100, 0.0042, -0.0141, -0.0003, -0.0043, -0.0115],
    [0.0144, -0.0073, -0.0026, -0.0101, -0.0090, 0.0182, -0.0152, 0.0095]])
REFERENCE_BIAS_GRAD = torch.tensor([-0.1162, 0.1062, -0.1275, -0.0206, -0.1149])
with torch.random.fork_rng():
    torch.manual_seed(0)
    x_ref, y_ref = torch.randn(30, 8), torch.randn(30, 5)
    layer = isaac.Linear(8, 5, la=0.1)
F.mse_loss(layer(x_ref), y_ref).backward()
print("reference self-check, weight gradient within 5e-5:",
      bool((layer.weight.grad - REFERENCE_WEIGHT_GRAD).abs().max() < 5e-5))
print("reference self-check, bias gradient within 5e-5:",
      bool((layer.bias.grad - REFERENCE_BIAS_GRAD).abs().max() < 5e-5))

agree = []
for bb, nn_ in [(59, 60), (60, 60), (61, 60), (60, 400), (400, 60)]:
    G_ = torch.randn(bb, 7, generator=gen)
    A_ = torch.rand(bb, nn_, generator=gen)
    batch_form = isaac.isaac_weight_gradient(G_, A_, 0.1, form="batch")
    input_form = isaac.isaac_weight_gradient(G_, A_, 0.1, form="input")
    agree.append(rel(batch_form, input_form) < 1e-4)
print("b×b and n×n code paths agree (float32, b = n−1, n, n+1, and far apart):", all(agree))

torch.manual_seed(SEED)
plain = torch.nn.Linear(20, 7)
swapped = isaac.Linear(20, 7, la=0.1)
swapped.load_state_dict(plain.state_dict())
x_in = torch.randn(10, 20, requires_grad=True)
x_in2 = x_in.detach().clone().requires_grad_(True)
plain(x_in).square().sum().backward()
swapped(x_in2).square().sum().backward()
print("input and bias gradients equal nn.Linear's:",
      torch.allclose(x_in.grad, x_in2.grad) and torch.allclose(plain.bias.grad, swapped.bias.grad))
print(swapped)


# %% [markdown]
# ## 3. Experiments: the shared training function
#
# One function trains every MLP, auto-encoder and CNN below: it builds the model, puts ζ\* on the
# chosen layers (`isaac.apply_isaac`) or attaches a `KroneckerPreconditioner` for ζ and K-FAC, and
# runs `training.fit` with the run's seeded generator (the same batch order for every method at a
# given seed; the label sampling of ζ and K-FAC uses its own generator). It evaluates the
# training loss on a fixed training subset (`n_eval` images) and the test loss and accuracy. A run
# whose loss turns non-finite, or ends above 10× its initial value, is recorded as diverged. Records are cached under
# `results/<scale>/01_isaac/`.

# %%
@functools.lru_cache(maxsize=None)
def arrays(name, n_train, n_test):
    """(x_train, y_train, x_test, y_test): pixels / 255 as float32; MNIST-type images flattened."""
    tr, te = data.load(name, "train"), data.load(name, "test")
    def prep(ds, k):
        x = ds.x[:k].float() / 255
        return (x.reshape(len(x), -1) if x.dim() == 3 else x), ds.y[:k]
    return (*prep(tr, n_train), *prep(te, n_test))


def build_model(spec):
    if spec.startswith("mlp-"):
        width = int(spec[4:])
        return models.mlp([784, width, width, width, width, 10])
    if spec == "autoencoder":
        return models.autoencoder()
    if spec == "sgn_arch_4":
        return models.sgn_arch_4()
    if spec == "resnet18":
        return models.resnet18()
    raise ValueError(spec)


@torch.no_grad()
def mse(model, x, batch=2000):
    model.eval()
    total = sum(F.mse_loss(model(x[i:i + batch]), x[i:i + batch], reduction="sum").item()
                for i in range(0, len(x), batch))
    model.train()
    return total / x.numel()


def train(cfg, ctx):
    autoencode = cfg["task"] == "autoencode"
    xtr, ytr, xte, yte = (t.to(ctx.device) for t in arrays(cfg["dataset"], cfg["n_train"], cfg["n_test"]))
    if autoencode:
        ytr, yte = xtr, xte
    model = build_model(cfg["model"]).to(ctx.device)
    n_linear = sum(isinstance(mod, torch.nn.Linear) for mod in model.modules())
    layers = cfg.get("layers") or list(range(1, n_linear + 1))
    pre = None
    if cfg["method"] == "isaac":
        isaac.apply_isaac(model, cfg["la"], layers)
    elif cfg["method"] in ("zeta", "kfac"):
        sampler = torch.Generator(device=ctx.device).manual_seed(cfg["seed"] + 1)
        pre = isaac_kfac.KroneckerPreconditioner(
            model, cfg["la"], cfg["lg"], layers, method=cfg["method"],
            loss="mse" if autoencode else "cross_entropy", generator=sampler)
    params = list(model.parameters())
    if cfg.get("weight_lr") is not None:          # own rate for the preconditioned weights (K-FAC)
        chosen = {id(mod.weight) for _, mod in isaac.select_linear_layers(model, layers)}
        params = [{"params": [p for p in params if id(p) in chosen], "lr": cfg["weight_lr"]},
                  {"params": [p for p in params if id(p) not in chosen]}]
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=cfg["lr"])
    else:
        opt = torch.optim.SGD(params, lr=cfg["lr"],
                              momentum=0.9 if cfg["optimizer"] == "momentum" else 0.0)
    loss_fn = F.mse_loss if autoencode else F.cross_entropy

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        if pre is None:
            loss.backward()
        else:
            pre.backward(loss, out)
        opt.step()
        return loss.item()

    n_eval = cfg["n_eval"]
    def evaluate():
        if autoencode:
            return {"loss": mse(model, xte), "train_subset_loss": mse(model, xtr[:n_eval])}
        test = training.evaluate_classifier(model, xte, yte)
        train_sub = training.evaluate_classifier(model, xtr[:n_eval], ytr[:n_eval])
        return {**test, "train_subset_loss": train_sub["loss"]}

    budget = ctx.budget
    total = budget.steps or math.ceil(budget.epochs * math.ceil(len(xtr) / cfg["batch"]))
    with ctx.progress(total=total) as bar:
        out = training.fit(step, xtr, ytr, batch_size=cfg["batch"], budget=budget,
                           generator=ctx.generator, evaluate=evaluate,
                           eval_every_steps=cfg.get("eval_every"), progress=bar)
    if pre is not None:
        pre.remove()
    met = out["metrics"]
    met["eval_train_loss"] = met.pop("test_train_subset_loss")
    final = met["eval_train_loss"][-1]
    if out["status"] == "ok" and not final <= 10 * met["eval_train_loss"][0]:   # nan, inf or blown up
        out["status"] = "diverged"
    out["summary"].update({"final_train_loss": final, "final_test_loss": met["test_loss"][-1],
                           "final_test_accuracy": met.get("test_accuracy", [float("nan")])[-1]})
    return out


def run(**cfg):
    """One cached, seeded run; cfg gets the shared sizes and the seed."""
    cfg = {"seed": SEED, "n_train": CONFIG["n_train"], "n_test": CONFIG["n_test"],
           "n_eval": CONFIG["n_eval"], "task": "classify", "optimizer": "sgd", **cfg}
    cfg = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in cfg.items()}
    return experiment.run(train, cfg, notebook=NB, scale=SCALE, name=cfg["name"], device=DEVICE)


def score(rec):
    """Final training loss on the evaluation subset; +inf for a diverged run."""
    v = rec["summary"].get("final_train_loss", float("nan"))
    return v if rec["status"] == "ok" and math.isfinite(v) else INF


def best(records):
    return min(records, key=score)


def curve(rec, **labels):
    met = rec["metrics"]
    keys = ["step", "epoch", "time", "eval_train_loss", "test_loss", "test_accuracy"]
    frame = pd.DataFrame({k: met[k] for k in keys if k in met}).rename(columns={"time": "time_s"})
    return frame.assign(**labels, status=rec["status"])


sig = plotting.round_sig
fmt = lambda v: "diverged" if not math.isfinite(v) else f"{sig(v):g}"

# %% [markdown]
# ## 4. Figure 5 and Figure 9: ζ\* on chosen layers of a 5×400 MLP
#
# **Paper.** 5-layer, 400-wide ReLU MLP on MNIST; plain gradient descent against ζ\* on the layer
# subsets {1..5}, {1}, {5}, {1,2,3}, {3,4,5}, {1,3,5}, {2,4}; training loss against time (Figure 5)
# and test accuracy (Figure 9). Claim: **every subset beats GD except {3,4,5}, which is about equal to
# GD.**
#
# **Here (ci).** The reference script's setting (batch 100, λ_a = 10, SGD without momentum), on a
# 10 000-image training subset for 200 steps (2 epochs); learning rate tuned per setting on
# {1, 0.3, 0.1} (the part of the paper's grid where the reference example's choices, 1.0 for ζ\* and
# 0.1 for GD, lie). At paper scale: the full training set, 30 epochs, the full grid.

# %%
C5 = CONFIG["fig5"]
SUBSETS = {"GD": None, "{1,2,3,4,5}": [1, 2, 3, 4, 5], "{1}": [1], "{5}": [5], "{1,2,3}": [1, 2, 3],
           "{3,4,5}": [3, 4, 5], "{1,3,5}": [1, 3, 5], "{2,4}": [2, 4]}
fig5_runs = {}
for label, layers in SUBSETS.items():
    recs = []
    for lr in C5["lrs"]:
        common = dict(dataset="mnist", model=f"mlp-{C5['width']}", batch=C5["batch"],
                      budget=C5["budget"], eval_every=C5["eval_every"], lr=lr)
        tag = "gd" if layers is None else "L" + "".join(map(str, layers))
        if layers is None:
            recs.append(run(name=f"fig5-{tag}-lr{lr:g}", method="gd", **common))
        else:
            recs.append(run(name=f"fig5-{tag}-lr{lr:g}", method="isaac", la=C5["la"], layers=layers,
                            **common))
    fig5_runs[label] = recs
fig5 = pd.DataFrame([{"setting": k, "best lr": best(v)["config"]["lr"],
                      "train loss": fmt(score(best(v))),
                      "test accuracy": fmt(best(v)["summary"]["final_test_accuracy"]),
                      "diverged lrs": ", ".join(f"{r['config']['lr']:g}" for r in v if r["status"] != "ok") or "—"}
                     for k, v in fig5_runs.items()])
print("MNIST (real), 5×400 MLP, batch 100, λ_a = 10, after", C5["budget"])
print(plotting.save_table(fig5, PAPER, "fig5_layers"))


# %% tags=["nbval-ignore-output"]
def draw_fig5(runs, title, fig_id):
    frames = [curve(best(v), setting=k, lr=best(v)["config"]["lr"]) for k, v in runs.items()]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["step"] > 0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, (k, grp) in enumerate(df.groupby("setting", sort=False)):
        style = dict(color="black", lw=2.2) if k == "GD" else dict(color=f"C{i % 10}")
        axes[0].plot(grp["time_s"], grp["eval_train_loss"], label=k, **style)
        axes[1].plot(grp["step"], grp["eval_train_loss"], label=k, **style)
        axes[2].plot(grp["step"], grp["test_accuracy"], label=k, **style)
    for ax, xl, yl in zip(axes, ["training time (s)", "step", "step"],
                          ["training loss", "training loss", "test accuracy"]):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[1].legend(title="ζ* on layers", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    line = plotting.save_figure(fig, PAPER, fig_id, df)
    plt.show()
    return df, line


fig5_df, line = draw_fig5(fig5_runs, "Figures 5 and 9 — MNIST (real), 5×400 ReLU MLP: ζ* on chosen "
                          f"layers vs GD ({SCALE} scale, best lr per setting)", "fig5_layers")
print(line)
times = fig5_df.groupby("setting", sort=False)["time_s"].max()
print("training seconds per run:", ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))

# %% [markdown]
# Figure 9 is the test-accuracy panel of the same runs (right); it is saved on its own as well.

# %%
fig9 = fig5_df[["setting", "lr", "step", "test_accuracy"]]
fig, ax = plt.subplots(figsize=(6.4, 4))
for i, (k, grp) in enumerate(fig9.groupby("setting", sort=False)):
    ax.plot(grp["step"], grp["test_accuracy"], label=k, **(dict(color="black", lw=2.2) if k == "GD" else dict(color=f"C{i}")))
ax.set(xlabel="step", ylabel="test accuracy",
       title=f"Figure 9 — MNIST (real), 5×400 MLP, test accuracy ({SCALE} scale)")
ax.legend(fontsize=8, title="ζ* on layers")
print(plotting.save_figure(fig, PAPER, "fig9_layers_test_accuracy", fig9))
plt.show()

gd5 = score(best(fig5_runs["GD"]))
beats = {k: score(best(v)) < gd5 for k, v in fig5_runs.items() if k != "GD"}
ratio345 = score(best(fig5_runs["{3,4,5}"])) / gd5
others = [k for k in beats if k != "{3,4,5}"]
print("subsets beating GD (final training loss):", ", ".join(k for k, v in beats.items() if v) or "none")
weakest = max(beats, key=lambda k: score(best(fig5_runs[k])))
print(f"{{3,4,5}} loss / GD loss = {sig(ratio345):g}; weakest subset: {weakest}")
FIG5_OTHERS = all(beats[k] for k in others)
FIG5_VERDICT = FIG5_OTHERS and not beats["{3,4,5}"]
print("every subset other than {3,4,5} beats GD:", FIG5_OTHERS)
print("{3,4,5} does not beat GD (the claimed exception):", not beats["{3,4,5}"])
print("Figure 5 claim holds in full here:", FIG5_VERDICT)

# %% [markdown]
# ## 5. Figure 1: the (λ_g, λ_a) grid on MNIST MLPs
#
# **Paper.** 5-layer ReLU MLPs (widths 100, 400, 1600), batch 60, 40 epochs, SGD; heat-maps of the
# training loss and test accuracy over λ_g, λ_a ∈ {10⁻⁶ … 10⁶} plus the column λ_g = ∞ (ζ\*); the
# corner λ_g = λ_a = ∞ is gradient descent; one learning rate per sector. Claim: **performance does
# not degrade as λ_g → ∞, so ζ\* is as good as ζ**, and good runs exist at batch 60 for all widths.
#
# **Here (ci).** Width 100, batch 60, 250 steps on the 10 000-image subset. The ζ\* column over
# λ_a ∈ {10⁻³ … 10³} and GD, each with the learning rate tuned **per cell** on the full grid
# {1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001} (the paper tunes one rate per sector; per-cell tuning is
# more generous to every cell). A small block of finite-λ_g cells (ζ, λ_g, λ_a ∈ {10⁻², 1, 10²}, lr on
# {1, 0.3}) tests the claim that λ_g → ∞ does not hurt.

# %%
C1 = CONFIG["fig1"]
common1 = dict(dataset="mnist", model=f"mlp-{C1['width']}", batch=C1["batch"], budget=C1["budget"])
grid_records = []          # (sector, λ_g, λ_a, lr, record)
for lr in C1["lrs"]:
    grid_records.append(("GD", INF, INF, lr, run(name=f"fig1-gd-lr{lr:g}", method="gd", lr=lr, **common1)))
    for lg in C1["lgs"]:
        for la in C1["las"]:
            if math.isinf(lg):
                rec = run(name=f"fig1-isaac-la{la:g}-lr{lr:g}", method="isaac", la=la, lr=lr, **common1)
                grid_records.append(("ζ*", lg, la, lr, rec))
            else:
                rec = run(name=f"fig1-zeta-lg{lg:g}-la{la:g}-lr{lr:g}", method="zeta", la=la, lg=lg,
                          lr=lr, **common1)
                grid_records.append(("ζ", lg, la, lr, rec))
for lr in C1["zeta_lrs"]:
    for lg in C1["zeta_lgs"]:
        for la in C1["zeta_las"]:
            rec = run(name=f"fig1-zeta-lg{lg:g}-la{la:g}-lr{lr:g}", method="zeta", la=la, lg=lg, lr=lr,
                      **common1)
            grid_records.append(("ζ", lg, la, lr, rec))
grid = pd.DataFrame([{"sector": s, "lambda_g": lg, "lambda_a": la, "lr": lr, "train_loss": score(r),
                      "test_accuracy": r["summary"]["final_test_accuracy"] if r["status"] == "ok" else np.nan}
                     for s, lg, la, lr, r in grid_records])
cells = grid.sort_values("train_loss").groupby(["sector", "lambda_g", "lambda_a"], sort=False).head(1)
cells = cells.sort_values(["sector", "lambda_g", "lambda_a"]).reset_index(drop=True)
shown = cells.assign(**{"train_loss": cells["train_loss"].map(fmt),
                        "test_accuracy": cells["test_accuracy"].map(fmt)})
print(f"MNIST (real), 5×{C1['width']} MLP, batch {C1['batch']}, {C1['budget']}: best lr per cell")
print(plotting.save_table(shown, PAPER, "fig1_grid"))

# %%
star = cells[cells["sector"] == "ζ*"].sort_values("lambda_a")
gd1 = cells[cells["sector"] == "GD"].iloc[0]
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
pivot = grid[grid["sector"].isin(["ζ*", "GD"])].assign(
    col=lambda d: d["lambda_a"].map(lambda v: "GD (∞)" if math.isinf(v) else f"{v:g}"),
    log_loss=lambda d: np.log10(d["train_loss"].replace(INF, np.nan)))
cols = [f"{v:g}" for v in C1["las"]] + ["GD (∞)"]
heat = pivot.pivot(index="lr", columns="col", values="log_loss")[cols].sort_index(ascending=False)
im = axes[0].imshow(heat.to_numpy(), cmap="viridis_r", aspect="auto")
axes[0].set_xticks(range(len(cols)), cols, rotation=45)
axes[0].set_yticks(range(len(heat.index)), [f"{v:g}" for v in heat.index])
axes[0].set(xlabel="λ_a (λ_g = ∞: ζ*)", ylabel="learning rate", title="log10 training loss (blank: diverged)")
fig.colorbar(im, ax=axes[0])
axes[1].semilogx(star["lambda_a"], star["train_loss"], "o-", label="ζ* (best lr per λ_a)")
axes[1].axhline(gd1["train_loss"], color="black", ls="--", label="GD (best lr)")
zeta_cells = cells[cells["sector"] == "ζ"]
for i, (lg, grp) in enumerate(zeta_cells.groupby("lambda_g")):
    axes[1].semilogx(grp["lambda_a"], grp["train_loss"], "s:", color=f"C{i + 1}", label=f"ζ, λ_g = {lg:g}")
axes[1].set(yscale="log", xlabel="λ_a", ylabel="training loss", title="best lr per cell")
axes[1].legend(fontsize=8)
axes[2].semilogx(star["lambda_a"], star["test_accuracy"], "o-", label="ζ*")
axes[2].axhline(gd1["test_accuracy"], color="black", ls="--", label="GD")
for i, (lg, grp) in enumerate(zeta_cells.groupby("lambda_g")):
    axes[2].semilogx(grp["lambda_a"], grp["test_accuracy"], "s:", color=f"C{i + 1}", label=f"ζ, λ_g = {lg:g}")
axes[2].set(xlabel="λ_a", ylabel="test accuracy", title="test accuracy")
fig.suptitle(f"Figure 1 (reduced) — MNIST (real), 5×{C1['width']} MLP, batch {C1['batch']}, {SCALE} scale")
fig.tight_layout()
print(plotting.save_figure(fig, PAPER, "fig1_grid", grid.replace(INF, np.nan)))
plt.show()

best_star = star.loc[star["train_loss"].idxmin()]
print(f"best ζ* cell: λ_a = {best_star['lambda_a']:g}, lr = {best_star['lr']:g}")
print("best ζ* cell beats GD on training loss:", bool(best_star["train_loss"] < gd1["train_loss"]))
big = star[star["lambda_a"] == max(C1["las"])].iloc[0]
print(f"ζ* at λ_a = {max(C1['las']):g} vs GD, loss ratio {sig(big['train_loss'] / gd1['train_loss']):g} "
      "(tends to GD as λ_a → ∞)")
small = star[star["lambda_a"] == min(C1["las"])].iloc[0]
print(f"ζ* at λ_a = {min(C1['las']):g}: loss {fmt(small['train_loss'])} at lr {small['lr']:g} "
      f"(worse than GD: {bool(small['train_loss'] > gd1['train_loss'])})")
if len(zeta_cells):
    shared = zeta_cells["lambda_a"].unique()
    ratios = [float(star.loc[star["lambda_a"] == la, "train_loss"].iloc[0]
                    / zeta_cells.loc[zeta_cells["lambda_a"] == la, "train_loss"].min()) for la in shared]
    print("ζ* loss / best finite-λ_g ζ loss at λ_a =",
          ", ".join(f"{la:g}: {sig(r):g}" for la, r in zip(shared, ratios)))
    FIG1_VERDICT = bool(max(ratios) <= 1.5)
    print("Figure 1 claim (no degradation as λ_g → ∞: ζ* within 1.5× of the best ζ at each λ_a):",
          FIG1_VERDICT)
else:
    FIG1_VERDICT = bool(best_star["train_loss"] < gd1["train_loss"])

# %% [markdown]
# ## 6. Figure 4: the 400-wide MLP with Adam
#
# **Paper.** Figure 1's 400-wide setup with Adam; same (λ_g, λ_a) grid (values in the paper's PDF).
# **Here (ci).** The ζ\* column (λ_a ∈ {10⁻³, 10⁻¹, 10, 10³}) and Adam alone, width 400, batch 60,
# 200 steps, Adam learning rate on {0.003, 0.001}. Adam divides by a running second moment, so the
# overall scale of ζ\* (which shrinks with λ_a) matters much less than under SGD; only its direction does.

# %%
C4 = CONFIG["fig4"]
common4 = dict(dataset="mnist", model=f"mlp-{C4['width']}", batch=C4["batch"], budget=C4["budget"],
               optimizer="adam")
adam_rows = []
for lr in C4["lrs"]:
    adam_rows.append({"setting": "Adam", "lambda_a": INF, "lr": lr,
                      "rec": run(name=f"fig4-adam-lr{lr:g}", method="gd", lr=lr, **common4)})
    for la in C4["las"]:
        adam_rows.append({"setting": "ζ* + Adam", "lambda_a": la, "lr": lr,
                          "rec": run(name=f"fig4-isaac-la{la:g}-lr{lr:g}", method="isaac", la=la, lr=lr,
                                     **common4)})
adam = pd.DataFrame([{**{k: v for k, v in r.items() if k != "rec"}, "train_loss": score(r["rec"]),
                      "test_accuracy": r["rec"]["summary"]["final_test_accuracy"]} for r in adam_rows])
adam_best = adam.sort_values("train_loss").groupby(["setting", "lambda_a"]).head(1).sort_values(["setting", "lambda_a"])
print(f"MNIST (real), 5×{C4['width']} MLP, Adam, batch {C4['batch']}, {C4['budget']}: best lr per cell")
print(plotting.save_table(adam_best.assign(train_loss=adam_best["train_loss"].map(fmt),
                                           test_accuracy=adam_best["test_accuracy"].map(fmt)),
                          PAPER, "fig4_adam"))
fig, ax = plt.subplots(figsize=(6.4, 4))
st = adam_best[adam_best["setting"] == "ζ* + Adam"]
ax.semilogx(st["lambda_a"], st["train_loss"], "o-", label="ζ* + Adam (best lr)")
adam_gd = adam_best[adam_best["setting"] == "Adam"]["train_loss"].iloc[0]
ax.axhline(adam_gd, color="black", ls="--", label="Adam (best lr)")
ax.set(yscale="log", xlabel="λ_a", ylabel="training loss",
       title=f"Figure 4 (reduced) — MNIST (real), 5×{C4['width']} MLP, Adam, {SCALE} scale")
ax.legend()
print(plotting.save_figure(fig, PAPER, "fig4_adam", adam.replace(INF, np.nan)))
plt.show()
n_better = int((st["train_loss"] < adam_gd).sum())
FIG4_VERDICT = n_better > 0
print(f"ζ* + Adam beats Adam alone at {n_better} of {len(st)} λ_a values; "
      f"best ratio {sig(st['train_loss'].min() / adam_gd):g}")

# %% [markdown]
# ## 7. Figures 2 and 7: the MNIST auto-encoder — GD, ζ\*, ζ and K-FAC
#
# **Paper.** The 784-1000-500-30-500-1000-784 ReLU auto-encoder, MSE, one CPU core; training loss
# against time and steps for GD, ζ\*(λ = 0.1), K-FAC and ζ at λ = 0.1 and 0.01. Claims: **at λ = 0.1
# K-FAC, ζ and ζ\* are almost identical per step and ζ\* is by far the fastest in time; at λ = 0.01
# K-FAC and ζ converge faster but ζ\* is unstable; a GD step is only about 10 % faster than a ζ\*
# step.** Figure 7 adds SGD with momentum, batch 600 and Adam.
#
# **Here (ci).** Batch 60 (the paper's batch for this figure is in its PDF; Table 2 times this model
# at batch 60), 120 steps on the 10 000-image subset, λ_g = λ_a = λ, loss `F.mse_loss` (mean over
# pixels, the scale of the paper's loss axis). Learning rates tuned per method and λ on {1, 0.3, 0.1}
# for GD, ζ\* and ζ. The K-FAC weight step is exactly ζ/(λ_g λ_a) (Theorem 1), so K-FAC runs with its
# weights at ζ's tuned rate times λ² (biases, which keep their plain gradient, at ζ's rate): it then
# takes ζ's steps up to round-off **by construction**, and what the K-FAC run measures is the cost of
# forming and inverting the dense factors. Figure 7's extras at ci: SGD with momentum 0.9 and Adam
# (two rates each); batch 600 only at paper scale.
#
# A scale to keep in mind: with the mean-over-pixels MSE, the per-example loss Hessian is (2/784) I,
# so the output factor S_g of the last layer is about 0.0026 I, far below λ_g = 0.1. At λ = 0.1 the
# output damping therefore dominates and ζ ≈ ζ\* (P ≈ I); how the paper normalised its loss, which
# fixes what a given λ_g means, is not stated in the text.

# %%
C2 = CONFIG["fig2"]
common2 = dict(dataset="mnist", model="autoencoder", task="autoencode", batch=C2["batch"],
               budget=C2["budget"], eval_every=C2["eval_every"])
ae = {}
ae["GD"] = [run(name=f"fig2-gd-lr{lr:g}", method="gd", lr=lr, **common2) for lr in C2["lrs"]]
for lam in C2["lams"]:
    ae[f"ζ* λ={lam:g}"] = [run(name=f"fig2-isaac-la{lam:g}-lr{lr:g}", method="isaac", la=lam, lr=lr,
                                **common2) for lr in C2["lrs"]]
    ae[f"ζ λ={lam:g}"] = [run(name=f"fig2-zeta-l{lam:g}-lr{lr:g}", method="zeta", la=lam, lg=lam, lr=lr,
                               **common2) for lr in C2["lrs"]]
for lam in C2["lams"]:
    lr_z = best(ae[f"ζ λ={lam:g}"])["config"]["lr"]
    ae[f"K-FAC λ={lam:g}"] = [run(name=f"fig2-kfac-l{lam:g}-lr{lr_z:g}", method="kfac", la=lam, lg=lam,
                                   lr=lr_z, weight_lr=lr_z * lam**2, **common2)]
for opt_name, lrs in C2["extra_lrs"].items():
    ae[f"SGD+momentum" if opt_name == "momentum" else "Adam"] = [
        run(name=f"fig7-{opt_name}-lr{lr:g}", method="gd", optimizer=opt_name, lr=lr, **common2) for lr in lrs]
if C2["big_batch"]:
    big = {**common2, "batch": C2["big_batch"]}
    ae[f"GD batch {C2['big_batch']}"] = [run(name=f"fig7-gd-b{C2['big_batch']}-lr{lr:g}", method="gd", lr=lr, **big) for lr in C2["lrs"]]
    lam = C2["lams"][-1]
    lr_z = best(ae[f"ζ λ={lam:g}"])["config"]["lr"]
    ae[f"K-FAC λ={lam:g} batch {C2['big_batch']}"] = [run(name=f"fig7-kfac-b{C2['big_batch']}-l{lam:g}", method="kfac", la=lam, lg=lam, lr=lr_z, weight_lr=lr_z * lam**2, **big)]
ae_table = pd.DataFrame([{"method": k, "best lr": best(v)["config"]["lr"], "train loss": fmt(score(best(v))),
                          "test loss": fmt(best(v)["summary"]["final_test_loss"]),
                          "diverged lrs": ", ".join(f"{r['config']['lr']:g}" for r in v if r["status"] != "ok") or "—"}
                         for k, v in ae.items()])
print(f"MNIST (real) auto-encoder 784-1000-500-30-500-1000-784, MSE, batch {C2['batch']}, {C2['budget']}")
print(plotting.save_table(ae_table, PAPER, "fig2_autoencoder"))

# %% tags=["nbval-ignore-output"]
ae_df = pd.concat([curve(best(v), method=k, lr=best(v)["config"]["lr"]) for k, v in ae.items()], ignore_index=True)
ae_df = ae_df[ae_df["step"] > 0]
fig2_methods = ["GD"] + [f"{m} λ={lam:g}" for lam in C2["lams"] for m in ("ζ*", "ζ", "K-FAC")]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
for i, k in enumerate(fig2_methods):
    grp = ae_df[ae_df["method"] == k]
    style = dict(color="black", lw=2.2) if k == "GD" else dict(color=f"C{i}", ls="-" if "0.1" in k else "--")
    axes[0].plot(grp["time_s"], grp["eval_train_loss"], label=k, **style)
    axes[1].plot(grp["step"], grp["eval_train_loss"], label=k, **style)
axes[0].set(xlabel="training time (s)", ylabel="training loss (MSE)", xscale="log")
axes[1].set(xlabel="step", ylabel="training loss (MSE)")
axes[1].legend(fontsize=8)
fig.suptitle(f"Figure 2 — MNIST (real) auto-encoder, batch {C2['batch']}, {SCALE} scale (diverged runs end early)")
fig.tight_layout()
print(plotting.save_figure(fig, PAPER, "fig2_autoencoder", ae_df[ae_df["method"].isin(fig2_methods)]))
plt.show()
per_step = {k: 1e3 * best(v)["summary"]["train_time_s"] / max(best(v)["summary"]["steps"], 1) for k, v in ae.items()}
print("ms per step:", ", ".join(f"{k} {v:.1f}" for k, v in per_step.items()))
print(f"GD step faster than ζ* step by {100 * (1 - per_step['GD'] / per_step['ζ* λ=0.1']):.0f} % "
      "(paper: about 10 %)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
fig7_methods = ["GD", "ζ* λ=0.1", "K-FAC λ=0.01", "SGD+momentum", "Adam"] + [k for k in ae if "batch" in k]
fig7_df = ae_df[ae_df["method"].isin(fig7_methods)][["method", "lr", "step", "eval_train_loss", "test_loss"]]
for i, k in enumerate(fig7_methods):
    grp = fig7_df[fig7_df["method"] == k]
    axes[0].plot(grp["step"], grp["eval_train_loss"], label=k, color=f"C{i}")
    axes[1].plot(grp["step"], grp["test_loss"], label=k, color=f"C{i}")
axes[0].set(xlabel="step", ylabel="training loss (MSE)")
axes[1].set(xlabel="step", ylabel="test loss (MSE)")
axes[0].legend(fontsize=8)
fig.suptitle(f"Figure 7 (reduced) — MNIST (real) auto-encoder, more baselines, {SCALE} scale")
fig.tight_layout()
print(plotting.save_figure(fig, PAPER, "fig7_autoencoder_baselines", fig7_df))
plt.show()


# %%
def final(k):
    return score(best(ae[k]))

s01 = {m: final(f"{m} λ=0.1") for m in ("ζ*", "ζ", "K-FAC")}
spread01 = max(s01.values()) / min(s01.values())
print("λ = 0.1 final training loss:", ", ".join(f"{k} {fmt(v)}" for k, v in s01.items()), "| GD", fmt(final("GD")))
print(f"λ = 0.1: ζ*, ζ, K-FAC within 1.5× of each other: {spread01 <= 1.5}; all beat GD: "
      f"{all(v < final('GD') for v in s01.values())}")
print(f"K-FAC λ=0.1 and ζ λ=0.1 (same steps by construction) agree within 1 %: "
      f"{abs(s01['K-FAC'] / s01['ζ'] - 1) < 0.01}")
s001 = {m: final(f"{m} λ=0.01") for m in ("ζ*", "ζ", "K-FAC")}
star_div = [r["config"]["lr"] for r in ae["ζ* λ=0.01"] if r["status"] != "ok"]
print("λ = 0.01 final training loss:", ", ".join(f"{k} {fmt(v)}" for k, v in s001.items()))
print(f"λ = 0.01: ζ and K-FAC better than ζ*: {s001['ζ'] < s001['ζ*'] and s001['K-FAC'] < s001['ζ*']}; "
      f"ζ* diverged at lr {star_div or 'none'}")
FIG2_VERDICT = spread01 <= 1.5 and all(v < final("GD") for v in s01.values())
FIG2_UNSTABLE = bool(star_div) or (s001["ζ"] < s001["ζ*"])

# %% [markdown]
# ## 8. Figure 3: auto-encoders on MNIST and Fashion-MNIST over (λ_g, λ_a)
#
# **Paper.** The same auto-encoder on MNIST and Fashion-MNIST; heat-maps of the training loss over
# (λ_g, λ_a). Claim: **ζ\* (the λ_g = ∞ column) performs well.**
#
# **Here (ci).** λ_a ∈ {0.01, 0.1, 1, 10} × λ_g ∈ {10⁻³, ∞}, 100 steps at batch 60 on 10 000-image
# subsets of each dataset (both real); one learning rate per sector, as in the paper: the rates
# tuned for ζ (λ = 0.1), ζ\* (λ = 0.1) and GD in Figure 2 on MNIST, reused for Fashion-MNIST.
# λ_g = 10⁻³ is below the output factor's scale (about 0.0026, see Figure 2), so those cells are
# genuinely different from ζ\*.

# %%
C3 = CONFIG["fig3"]
sector_lr = {"GD": best(ae["GD"])["config"]["lr"], "ζ*": best(ae["ζ* λ=0.1"])["config"]["lr"],
             "ζ": best(ae["ζ λ=0.1"])["config"]["lr"]}
heat_rows = []
for ds in C3["datasets"]:
    c = dict(dataset=ds, model="autoencoder", task="autoencode", batch=C3["batch"], budget=C3["budget"])
    rec = run(name=f"fig3-{ds}-gd", method="gd", lr=sector_lr["GD"], **c)
    heat_rows.append({"dataset": ds, "lambda_g": INF, "lambda_a": INF, "sector": "GD", "train_loss": score(rec)})
    for lg in C3["lgs"]:
        for la in C3["las"]:
            if math.isinf(lg):
                rec = run(name=f"fig3-{ds}-isaac-la{la:g}", method="isaac", la=la, lr=sector_lr["ζ*"], **c)
            else:
                rec = run(name=f"fig3-{ds}-zeta-lg{lg:g}-la{la:g}", method="zeta", la=la, lg=lg,
                          lr=sector_lr["ζ"], **c)
            heat_rows.append({"dataset": ds, "lambda_g": lg, "lambda_a": la,
                              "sector": "ζ*" if math.isinf(lg) else "ζ", "train_loss": score(rec)})
heat3 = pd.DataFrame(heat_rows)
print("sector learning rates:", sector_lr)
fig, axes = plt.subplots(1, len(C3["datasets"]), figsize=(6.5 * len(C3["datasets"]), 3.8))
for ax, ds in zip(np.atleast_1d(axes), C3["datasets"]):
    d = heat3[(heat3["dataset"] == ds) & (heat3["sector"] != "GD")]
    tab = d.pivot(index="lambda_a", columns="lambda_g", values="train_loss").sort_index(ascending=False)
    vals = np.log10(tab.replace(INF, np.nan).to_numpy())
    im = ax.imshow(vals, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(tab.shape[1]), ["∞ (ζ*)" if math.isinf(v) else f"{v:g}" for v in tab.columns])
    ax.set_yticks(range(tab.shape[0]), [f"{v:g}" for v in tab.index])
    for (i, j), v in np.ndenumerate(vals):
        ax.text(j, i, "div." if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8, color="w")
    gd_loss = heat3[(heat3["dataset"] == ds) & (heat3["sector"] == "GD")]["train_loss"].iloc[0]
    ax.set(xlabel="λ_g", ylabel="λ_a", title=f"{ds} (real): log10 training loss (GD: {np.log10(gd_loss):.2f})")
    fig.colorbar(im, ax=ax)
fig.suptitle(f"Figure 3 (reduced) — auto-encoders, {C3['budget']}, {SCALE} scale")
fig.tight_layout()
print(plotting.save_figure(fig, PAPER, "fig3_autoencoder_grids", heat3.replace(INF, np.nan)))
plt.show()
FIG3_VERDICT = True
for ds in C3["datasets"]:
    d = heat3[heat3["dataset"] == ds]
    star3 = d[d["sector"] == "ζ*"]
    zeta3 = d[d["sector"] == "ζ"]
    gd3 = d[d["sector"] == "GD"]["train_loss"].iloc[0]
    good = star3["train_loss"].min() < gd3
    close = star3["train_loss"].min() <= 1.5 * zeta3["train_loss"].min()
    FIG3_VERDICT &= bool(good and close)
    print(f"{ds}: best ζ* / GD = {sig(star3['train_loss'].min() / gd3):g}, best ζ* / best ζ = "
          f"{sig(star3['train_loss'].min() / zeta3['train_loss'].min()):g}; ζ* beats GD and is within 1.5× of ζ: "
          f"{bool(good and close)}")

# %% [markdown]
# ## 9. Table 2: runtime per epoch and peak memory
#
# **Paper.** Per MNIST epoch (1 000 steps at batch 60) on one CPU core and on an A6000 GPU, and peak
# memory, for the gradient, K-FAC (BackPACK), ζ and ζ\*, for 5-layer MLPs of width 100 … 6400 and the
# auto-encoder. Claims: **ζ\* costs little more than the gradient (+1.3 s per epoch at width 100 on
# CPU, under 1 % at width 6400), uses almost no extra memory; ζ costs 1.6–4.2× and K-FAC 9–37× the
# gradient on CPU.**
#
# **Here.** The measuring code of `benchmarks/isaac.py` (imported, not copied): every method takes a
# full SGD step on its own copy of the model, interleaved, median over repeats, on one thread (the
# paper's one core); synthetic data of MNIST's shape; peak memory from the allocator's events.
# Times are scaled to 1 000 steps. Two of the paper's ζ\* CPU cells could not be read reliably from
# the PDF text and are left out of the comparison. The measurement is stored as this notebook's record
# `table2` (settings per scale in `benchmarks/isaac.py`, `TABLE2`): at ci scale it is made on the first
# run and read back afterwards; the paper-scale record (width 6400 added) is shown in section 12.

# %%
spec = importlib.util.spec_from_file_location("bench_isaac", Path("..") / "benchmarks" / "isaac.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
LABEL = {"gradient": "gradient", "kfac": "K-FAC", "zeta": "ζ", "isaac": "ζ*"}


def table2_frame(results):
    """Our Table 2 (ms per step = s per 1 000-step epoch) beside the paper's ratios; NaN: not timed."""
    rows = []
    for name, row in results.items():
        for method in ["gradient", "kfac", "zeta", "isaac"]:
            ours = row.get(method, {})
            rows.append({"model": name, "method": LABEL[method],
                         "s per epoch (ours)": ours.get("time_ms", np.nan),
                         "time ratio (ours)": ours.get("time_ratio", np.nan),
                         "time ratio (paper CPU)": bench.paper_ratio(name, method, 0) or np.nan,
                         "peak MB (ours)": ours.get("peak_mb", np.nan),
                         "memory ratio (ours)": ours.get("memory_ratio", np.nan),
                         "memory ratio (paper)": bench.paper_ratio(name, method, 1) or np.nan})
    return pd.DataFrame(rows)


def draw_table2(table, title, figure_id):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, col, paper_col in [(axes[0], "time ratio (ours)", "time ratio (paper CPU)"),
                               (axes[1], "memory ratio (ours)", "memory ratio (paper)")]:
        for i, method in enumerate(["ζ*", "ζ", "K-FAC"]):
            d = table[table["method"] == method]
            ax.plot(d["model"], d[col], "o-", color=f"C{i}", label=f"{method} (ours)")
            ax.plot(d["model"], d[paper_col], "x:", color=f"C{i}", label=f"{method} (paper)")
        ax.set(yscale="log", ylabel=col.replace(" (ours)", " to the gradient"))
        ax.tick_params(axis="x", rotation=20)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    print(plotting.save_figure(fig, PAPER, figure_id, table))
    plt.show()


def table2_verdict(results):
    """The paper's Table 2 claims, checked on our measurements (rows not timed are left out)."""
    order_ok = {name: row["isaac"]["time_ratio"] < row["zeta"]["time_ratio"]
                and ("kfac" not in row or row["zeta"]["time_ratio"] < row["kfac"]["time_ratio"])
                for name, row in results.items()}
    print("ζ* ratio < ζ ratio < K-FAC ratio (time), per model:", order_ok)
    mem_ok = all(row["isaac"]["memory_ratio"] < 1.1 for row in results.values())
    print("ζ* peak memory within 10 % of the gradient's, every model:", mem_ok)
    widest = [n for n in results if n.startswith("mlp")][-1]
    shrinks = results[widest]["isaac"]["time_ratio"] < results["mlp 5x100"]["isaac"]["time_ratio"]
    print(f"ζ* relative overhead smaller at {widest} than at 5x100:", shrinks)
    kfac_far = all(row["kfac"]["time_ratio"] > 3 for row in results.values() if "kfac" in row)
    print("K-FAC more than 3× the gradient, every model where it was timed:", kfac_far)
    return all(order_ok.values()) and mem_ok and shrinks and kfac_far


# One record per scale (`bench.table2_record`): measured on first run, then read back. The paper-scale
# record (adds width 6400) is made by `python benchmarks/isaac.py --record paper`, or by this cell at
# SCALE = "paper".
table2_rec = bench.table2_record(SCALE)
CT = table2_rec["config"]
bench_results = table2_rec["metrics"]
table2 = table2_frame(bench_results)

# %% tags=["nbval-ignore-output"]
print(f"one thread, batch 60, median of up to {CT['repeats']} steps; s per epoch = ms per step (1 000 steps)")
print(plotting.save_table(table2, PAPER, "table2_cost", float_format="%.3g"))
draw_table2(table2, "Table 2 — cost relative to a gradient step (CPU, one thread; synthetic MNIST-shaped data)",
            "table2_cost")

# %%
TABLE2_VERDICT = table2_verdict(bench_results)

# %% [markdown]
# ## 10. Figures 6 and 8: ζ\* on the last layer of a CNN
#
# **Paper.** ResNet-18 on CIFAR-10, ζ\* only on the final fully connected layer; vanilla SGD without
# momentum, batch 100, constant learning rate from {1, 0.3, 0.1, 0.03, 0.01}, mean of 5 runs; test
# accuracy against GPU time for lr ∈ {0.1, 0.3, 1}. Claim: **ζ\* on the last layer beats GD, also at
# neighbouring, non-optimal learning rates.** Figure 8 repeats this with augmentation, a cosine
# schedule and 200 epochs.
#
# **Here (ci).** CIFAR-10 is not available offline: the stand-in `fashion_mnist_32` (Fashion-MNIST
# padded to 3×32×32; its numbers are not comparable with CIFAR-10's), a 5 000-image training subset
# (1 000 test images), and the
# small CNN `models.sgn_arch_4()` (3 conv layers, one hidden FC layer) instead of ResNet-18, for 2
# epochs at batch 100, one seed; λ_a = 1 on the last layer (the reference README's suggested start;
# the paper's value is in its PDF). Figure 8 (augmentation, cosine schedule, 200 epochs) is not run.

# %%
C6 = CONFIG["fig6"]
ds6 = data.load(C6["dataset"], "train")
fig6_rows = []
for seed in C6["seeds"]:
    for lr in C6["lrs"]:
        c = dict(dataset=C6["dataset"], model=C6["model"], n_train=C6["n_train"], n_test=C6["n_test"],
                 n_eval=C6["n_eval"], batch=C6["batch"], budget=C6["budget"],
                 eval_every=C6["eval_every"], lr=lr, seed=seed)
        gd = run(name=f"fig6-gd-lr{lr:g}-s{seed}", method="gd", **c)
        n_lin = sum(isinstance(mod, torch.nn.Linear) for mod in build_model(C6["model"]).modules())
        st6 = run(name=f"fig6-isaac-last-lr{lr:g}-s{seed}", method="isaac", la=C6["la"], layers=[n_lin], **c)
        for method, rec in [("GD", gd), ("ζ* last layer", st6)]:
            fig6_rows.append({"method": method, "lr": lr, "seed": seed, "status": rec["status"],
                              "test_accuracy": rec["summary"]["final_test_accuracy"] if rec["status"] == "ok" else np.nan,
                              "rec": rec})
fig6 = pd.DataFrame(fig6_rows)
summary6 = fig6.groupby(["lr", "method"])["test_accuracy"].mean().unstack()
print(f"{ds6.label}, {C6['model']}, batch {C6['batch']}, {C6['budget']}, final test accuracy "
      f"(mean over {len(C6['seeds'])} seed(s); NaN = diverged):")
print(plotting.save_table(summary6.reset_index().rename_axis(None, axis=1).round(2), PAPER, "fig6_last_layer"))

# %%
curves6 = pd.concat([curve(r["rec"], method=r["method"], lr=r["lr"], seed=r["seed"]) for r in fig6_rows],
                    ignore_index=True)
fig, ax = plt.subplots(figsize=(7, 4.2))
for i, lr in enumerate(C6["lrs"]):
    for method, ls in [("GD", "--"), ("ζ* last layer", "-")]:
        d = curves6[(curves6["lr"] == lr) & (curves6["method"] == method)].groupby("step")["test_accuracy"].mean()
        ax.plot(d.index, d.values, ls, color=f"C{i}", label=f"{method}, lr {lr:g}")
ax.set(xlabel="step", ylabel="test accuracy",
       title=f"Figure 6 (proxy) — {ds6.label}, {C6['model']}, {SCALE} scale")
ax.legend(fontsize=8)
print(plotting.save_figure(fig, PAPER, "fig6_last_layer", curves6.drop(columns=["time_s"])))
plt.show()
wins = (summary6["ζ* last layer"] > summary6["GD"])
best_lr6 = summary6.max(axis=1).idxmax()
print(f"ζ* last layer ≥ GD at the best lr ({best_lr6:g}): "
      f"{bool(summary6.loc[best_lr6, 'ζ* last layer'] >= summary6.loc[best_lr6, 'GD'])}; "
      f"beats GD at {int(wins.sum())} of {len(wins)} learning rates")
FIG6_VERDICT = bool(summary6.loc[best_lr6, "ζ* last layer"] >= summary6.loc[best_lr6, "GD"]) and int(wins.sum()) >= 2

# %% [markdown]
# ## 11. Table 1: BERT fine-tuning on GLUE — not run
#
# Table 1 fine-tunes pretrained BERT-Base and BERT-Mini on CoLA, MRPC and STS-B (batch 8, 10 runs,
# Adam or SGD with momentum). It needs the pretrained weights and the GLUE data, neither of which can
# be installed here (no network access to model hubs), and a GPU for BERT-Base. The paper also does not
# say which BERT layers used ζ\*, nor λ_a, the learning rates or the epochs. `isaac.Linear` already
# accepts (batch, tokens, n) inputs by flattening tokens into rows, which is what a BERT run would
# need; no proxy is run, because a tiny transformer on synthetic data would not test the claim.

# %% [markdown]
# ## 12. Paper-scale records
#
# Paper-scale runs write their records to `results/paper/01_isaac/` (committed). When present they
# are summarised here with the hardware that produced them.

# %%
paper_records = experiment.load_records(NB, "paper")
by_hardware = {}
for r in paper_records:
    env = r["environment"]
    key = f"{env['device']} {env['device_name']}, torch {env['torch']}"
    by_hardware.setdefault(key, []).append(r["name"].split("-")[0])
for key, names in by_hardware.items():
    print(f"{len(names)} paper-scale record(s) on {key}: {', '.join(sorted(set(names)))}")
if not paper_records:
    print("no paper-scale records yet (results/paper/01_isaac/ is empty)")
PAPER_FIG5 = [r for r in paper_records if r["name"].startswith("fig5-")]
TABLE2_PAPER_RECORD = next((r for r in paper_records if r["name"] == "table2"), None)
if PAPER_FIG5 and SCALE == "ci":
    groups = {}
    for r in PAPER_FIG5:
        layers = r["config"].get("layers")
        key = "GD" if r["config"]["method"] == "gd" else "{" + ",".join(map(str, layers)) + "}"
        groups.setdefault(key, []).append(r)
    draw_fig5(groups, f"Figures 5 and 9 — MNIST (real), 5×400 MLP, paper scale "
                      f"({PAPER_FIG5[0]['environment']['device_name']})", "fig5_layers_paper")

# %% [markdown]
# **Table 2 at paper scale** (when its record is present): the same measurement with 100 repeats, a
# 60 s budget per model and width 6400 added, made by `python benchmarks/isaac.py --record paper` on one
# core of the CPU named in the title. K-FAC is not timed at width 6400 (eight 6400×6400 factorisations
# and solves per step, by a flop count minutes per step on one core; the paper gives no K-FAC time
# there either).

# %% tags=["nbval-ignore-output"]
TABLE2_PAPER_VERDICT = None
if TABLE2_PAPER_RECORD is not None and SCALE == "ci":
    t2_paper = table2_frame(TABLE2_PAPER_RECORD["metrics"])
    print(plotting.save_table(t2_paper, PAPER, "table2_cost_paper", float_format="%.3g"))
    draw_table2(t2_paper, "Table 2, paper scale — cost relative to a gradient step "
                f"({TABLE2_PAPER_RECORD['environment']['device_name']}, one thread; synthetic MNIST-shaped data)",
                "table2_cost_paper")
    TABLE2_PAPER_VERDICT = table2_verdict(TABLE2_PAPER_RECORD["metrics"])
    z6400 = TABLE2_PAPER_RECORD["metrics"].get("mlp 5x6400", {}).get("isaac")
    if z6400:
        print(f"width 6400: ζ* / gradient time {z6400['time_ratio']:.3f} "
              f"(paper: {bench.paper_ratio('mlp 5x6400', 'isaac', 0):.3f}), memory "
              f"{z6400['memory_ratio']:.3f} (paper: {bench.paper_ratio('mlp 5x6400', 'isaac', 1):.3f})")

# %% [markdown]
# ## 13. Scorecard
#
# Verdicts compare the direction of each claim with our runs, not the paper's numbers (which are in
# its PDF, except Table 2's).

# %%
NEEDS_GPU = "not run (needs GPU: > 1 h on this CPU)"
fig5_paper_col = "see section 12" if PAPER_FIG5 else NEEDS_GPU
table2_paper_col = ("not run" if TABLE2_PAPER_VERDICT is None else
                    ("agrees" if TABLE2_PAPER_VERDICT else "differs") + " (CPU, widths to 6400; section 12)")
yes = lambda ok, detail: ("reproduced (ci proxy)" if ok else "differs") + f": {detail}"
score_rows = [
    ("Figure 5 / 9", "ζ* on every layer subset beats GD except {3,4,5} ≈ GD", fig5_paper_col,
     f"{sum(beats.values())}/7 subsets beat GD; {{3,4,5}}/GD loss {sig(ratio345):g}; weakest {weakest}",
     "reproduced (ci proxy)" if FIG5_VERDICT else
     ("partly: the other six subsets beat GD as claimed, but {3,4,5} beats GD too" if FIG5_OTHERS
      else "differs: see section 4")),
    ("Figure 1", "no degradation as λ_g → ∞ (ζ* as good as ζ); λ_a → ∞ gives GD", NEEDS_GPU,
     f"best ζ* (λ_a={best_star['lambda_a']:g}) loss {fmt(best_star['train_loss'])} vs GD {fmt(gd1['train_loss'])}",
     yes(FIG1_VERDICT, "width 100 only, ζ* column + 3×3 ζ block")),
    ("Figure 4", "ζ* works with Adam", NEEDS_GPU,
     f"ζ* + Adam beats Adam at {n_better}/{len(st)} λ_a", yes(FIG4_VERDICT, "ζ* column only")),
    ("Figure 2", "λ=0.1: ζ*, ζ, K-FAC ≈ per step, beat GD; ζ* fastest in time", NEEDS_GPU,
     f"spread {sig(spread01):g}×; GD {fmt(final('GD'))} vs ζ* {fmt(s01['ζ*'])}", yes(FIG2_VERDICT, "120 steps")),
    ("Figure 2", "λ=0.01: ζ, K-FAC faster; ζ* unstable", NEEDS_GPU,
     f"ζ* {fmt(s001['ζ*'])}, ζ {fmt(s001['ζ'])}, K-FAC {fmt(s001['K-FAC'])}",
     yes(FIG2_UNSTABLE, "ζ* worse or diverged" if FIG2_UNSTABLE else "ζ* not worse at λ=0.01")),
    ("Figure 3", "ζ* (λ_g = ∞) performs well on MNIST and Fashion-MNIST auto-encoders", NEEDS_GPU,
     "see section 8", yes(FIG3_VERDICT, "4×2 grid, 100 steps")),
    ("Figure 7", "momentum, Adam, batch 600 baselines", NEEDS_GPU,
     "momentum and Adam at ci (batch 600 at paper scale)", "proxy: shown, no claim tested"),
    ("Table 2", "ζ* ≈ gradient cost and memory; ζ 1.6–4.2×, K-FAC 9–37× on CPU", table2_paper_col,
     "ordering ζ* < ζ < K-FAC; ζ* memory within 10 %", yes(TABLE2_VERDICT, "CPU, one thread")),
    ("Figure 6", "ζ* on ResNet-18's last layer beats GD at best and nearby lrs (CIFAR-10)", "not run (needs GPU, CIFAR-10)",
     f"stand-in {C6['dataset']}, {C6['model']}: wins at {int(wins.sum())}/{len(wins)} lrs",
     ("proxy, agrees" if FIG6_VERDICT else "proxy, differs") + " (stand-in data, small CNN)"),
    ("Figure 8", "as Figure 6 with augmentation, cosine schedule, 200 epochs", "not run", "not run",
     "needs GPU and CIFAR-10"),
    ("Table 1", "ζ* improves BERT fine-tuning on CoLA, MRPC, STS-B", "not run", "not run",
     "not reproducible here: no pretrained BERT or GLUE data"),
]
scorecard = pd.DataFrame(score_rows, columns=["item", "paper claim", "ours at paper scale",
                                              f"ours at {SCALE} scale", "verdict"])
print(plotting.save_table(scorecard, PAPER, "scorecard"))
