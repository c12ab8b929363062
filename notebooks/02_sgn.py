# %% [markdown]
# # 02 · SGN: the stochastic generalized Gauss-Newton method
#
# M. Gargiani, A. Zanelli, M. Diehl, F. Hutter. *On the Promise of the Stochastic Generalized
# Gauss-Newton Method for Training DNNs.* arXiv 2006.02409 (2020). Reference code: `gmatilde/SGN`
# (Theano).
#
# **The claim.** With large minibatches (1000 samples), a few conjugate-gradient (CG) iterations on the
# Levenberg-Marquardt-damped Gauss-Newton system per minibatch give a method that needs far fewer
# iterations than SGD and, thanks to cheap forward-mode curvature products, also less *time*; it needs
# no step-size tuning (a trust-region rule adapts the damping, a line search is rarely active). The
# evidence is a set of benchmarks (Boston housing, sine regression at two frequencies, an MNIST MLP, a
# Fashion-MNIST LeNet, a CIFAR-10 CNN) where SGN(k), k = CG iterations, is compared with plain SGD over a
# learning-rate grid, and a table of test accuracy after T seconds. One ordering the reference does not
# point out: on Fashion-MNIST, SGD with learning rate 0.1 beats every SGN(k).
#
# **Results at a glance:** the verdicts at the end of §11 (`tables/sgn/scorecard.csv`, one per claim,
# with seeds and spread, rendered into `papers.md`) and the reference-vs-ours table of §12. Other notebooks:
# [00 · datasets](00_datasets.ipynb), [01 · ISAAC](01_isaac.ipynb).
#
# This notebook derives the method and checks each identity numerically, explains the implementation
# (`curvlab.SGN`), then re-runs every benchmark with the reference's architectures, initialisations and
# preprocessing, overlays the reference's own per-epoch logs, and recomputes its table from them.
#
# **Scales.** At `SCALE = "ci"` every benchmark runs reduced (subsets, epoch budgets, fewer grid points,
# seeds 1–3, one seed for the two CNNs) on a 2-core CPU in a few minutes; `curvlab.repro.sgn.SETTINGS` lists every reduction. At
# `SCALE = "paper"` the same code runs the reference's settings (batch sizes, budgets, grids, seeds 1–5).
# Paper-scale records are kept under `results/paper/02_sgn/`; the ci-scale notebook renders those that
# exist (figure ids ending in `_paper`, labelled with the hardware that produced them), so the committed
# notebook shows both. The CIFAR-10 CNN runs on the labelled stand-in `fashion_mnist_32`
# (Fashion-MNIST padded to 3×32×32 — its accuracies are *not* comparable with CIFAR-10's), 1 000 / 500
# images, batch 250, SGD {0.01, 0.1, 1} for 14 epochs, SGN(3) for 2 epochs (8 iterations, all in the
# 10-CG warm-up, so this is SGN(10)'s start as much as SGN(3)'s); read-outs as for Fashion-MNIST.

# %% tags=["parameters"]
SCALE = "ci"          # "ci" (2-core CPU, minutes) or "paper" (the reference's settings)
SEED = 0              # ci runs use seeds SEED + 1, 2, 3 (the two CNN benchmarks SEED + 1); paper: 1-5
DEVICE = "auto"       # kept for papermill calls; runs use experiment.run's "auto" (CUDA when present)
BENCHMARKS = "all"    # or a list, e.g. ["boston", "sine_10", "sine_100", "mnist", "fashion", "cifar10"]
SEEDS = None          # None: the scale's seeds; a list overrides them (e.g. fewer seeds on a CPU)

# %%
import json
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from curvlab import curvature, data, krylov, models, plotting
from curvlab._line_search import LineShortcut
from curvlab.repro import sgn as rs
from curvlab.repro import sgn_figures as sf
from curvlab.repro import sgn_readouts as ro
from curvlab.repro import sgn_reference
from curvlab.repro import sgn_report as rep
from curvlab.sgn import SGN, sgn_reference_init, trust_region_update

plotting.set_theme()
NB, PAPER = "02_sgn", "sgn"
ALL = ["boston", "sine_10", "sine_100", "mnist", "fashion", "cifar10"]


def as_list(value):
    """A list parameter, also when papermill passes it as text ('["boston"]' or 'boston,mnist')."""
    if isinstance(value, str):
        value = value.strip()
        return json.loads(value) if value.startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


SELECTED = ALL if BENCHMARKS == "all" else as_list(BENCHMARKS)
assert set(SELECTED) <= set(ALL), f"unknown benchmarks: {set(SELECTED) - set(ALL)}"
CIFAR_DATA = rs.cifar_dataset(SCALE)
torch.set_num_threads(rs.THREADS)   # one intra-op thread (see curvlab.repro.sgn.THREADS): timings stay meaningful
SETTINGS = rs.SETTINGS[SCALE]       # every size, budget, grid and seed list, per scale (ci lists its reductions)
SEED_LIST = ([int(s) for s in as_list(SEEDS)] if SEEDS not in (None, "None")
             else [SEED + i for i in SETTINGS["seeds"]] if SCALE == "ci" else SETTINGS["seeds"])
print(f"scale {SCALE}; benchmarks run here: {', '.join(SELECTED)}; seeds {SEED_LIST}")
print(f"CIFAR-10 data: {CIFAR_DATA}" + (" (stand-in)" if CIFAR_DATA != "cifar10" else ""))
print("reference logs: reference/sgn (carried in the repository; source gmatilde/SGN)")

# %% [markdown]
# ## 1. Derivation
#
# ### 1.1 Gauss-Newton and its generalisation
#
# On a minibatch of N samples the loss is $L(\theta) = \frac1N\sum_i \ell(f(x_i;\theta), y_i)$, with
# $f$ the network's output (logits for classification, the raw output for regression). Let
# $J = \partial f / \partial\theta$ be the Jacobian of the stacked outputs (N·C × P) and $H_L$ the
# Hessian of the batch loss with respect to those outputs (N·C × N·C, block-diagonal; the 1/N sits
# inside it). The chain rule gives the Hessian of L as
#
# $$\nabla^2 L = J^\top H_L J + \sum_{i,c} \frac{\partial L}{\partial f_{ic}}\, \nabla^2_\theta f_{ic}.$$
#
# Gauss-Newton drops the second term. For a squared error the dropped term is weighted by the residuals
# and vanishes where the model fits the data; the **generalized** Gauss-Newton (GGN) matrix
# $G = J^\top H_L J$ keeps the loss's curvature $H_L$ for any loss convex in the outputs (here
# cross-entropy on the pre-softmax logits, and the reference's MSE without ½, for which
# $H_L = \frac{2}{NC} I$).
#
# **Why G is PSD.** For cross-entropy the per-sample block is $H_i = (\operatorname{diag}(s_i) -
# s_i s_i^\top)/N$ with $s_i$ the softmax, and $v^\top H_i v = \frac1N(\sum_c s_c v_c^2 - (\sum_c s_c
# v_c)^2) = \frac1N\operatorname{Var}_{s}(v) \ge 0$; for MSE $H_L$ is a positive multiple of I. Hence
# $u^\top G u = (Ju)^\top H_L (Ju) \ge 0$ for every $u$: the quadratic model built on G is convex even
# where the true Hessian is not. Cutting the network at the logits (softmax inside the loss) is what
# makes $H_L$ PSD.
#
# The checks below use float64 and a tiny sigmoid MLP (3-4-3, 31 parameters) on 6 samples: G assembled
# from the explicit Jacobian and loss Hessian equals G assembled column by column from
# `curvature.ggn_vector_product`; its eigenvalues are ≥ 0 while the Hessian's are not; and for MSE at
# zero residual, G equals the full Hessian.

# %%
torch.manual_seed(0)
tiny = models.mlp([3, 4, 3], "sigmoid").double()
xs, ys_cls = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0, 2])
ys_reg = torch.randn(6, 3, dtype=torch.float64)
names = curvature.parameter_names(tiny)
theta0 = tuple(p.detach().clone() for p in tiny.parameters())
P = sum(t.numel() for t in theta0)


def f_flat(flat):                                    # (P,) -> outputs (N, C)
    return curvature.model_function(tiny, xs, names)(*curvature.unflatten_like(flat, theta0))


flat0 = curvature.flatten(theta0)


def dense_ggn_explicit(loss, targets):
    J = torch.func.jacrev(f_flat)(flat0).reshape(-1, P)                        # (N C, P)
    out = f_flat(flat0)
    H_L = torch.func.hessian(lambda o: curvature.loss_function(loss)(o.reshape(out.shape), targets))(
        out.reshape(-1))                                                         # (N C, N C)
    return J.T @ H_L @ J


def dense_from_products(product):
    cols = [curvature.flatten(product(curvature.unflatten_like(e, theta0))) for e in torch.eye(P, dtype=torch.float64)]
    return torch.stack(cols, 1)


def dense_hessian(loss, targets):
    return torch.func.hessian(lambda fl: curvature.loss_function(loss)(f_flat(fl), targets))(flat0)


for loss, targets in [("cross_entropy", ys_cls), ("mse", ys_reg)]:
    G_explicit = dense_ggn_explicit(loss, targets)
    G_products = dense_from_products(lambda v, lo=loss, t=targets: curvature.ggn_vector_product(tiny, lo, xs, t, v))
    eig_G = torch.linalg.eigvalsh(G_products)
    eig_H = torch.linalg.eigvalsh(dense_hessian(loss, targets))
    err = (G_explicit - G_products).abs().max() / G_explicit.abs().max()
    print(f"{loss:14s} J^T H_L J vs ggn_vector_product: rel. error < 1e-12: {bool(err < 1e-12)};  "
          f"G PSD (min eig >= -1e-12 max eig): {bool(eig_G.min() >= -1e-12 * eig_G.max())};  "
          f"Hessian indefinite: {bool(eig_H.min() < -1e-8)}")

# MSE at zero residual: the dropped term vanishes and G is the Hessian
y_fit = f_flat(flat0).detach()
gap = (dense_ggn_explicit("mse", y_fit) - dense_hessian("mse", y_fit)).abs().max()
print(f"MSE, targets = outputs: G equals the Hessian: {bool(gap < 1e-12)}")
print(f"MSE convention: H_L = 2/(N C) I: "
      f"{bool(torch.allclose(curvature.loss_derivatives('mse', y_fit, ys_reg).hessian_product(torch.ones(6, 3, dtype=torch.float64)), torch.full((6, 3), 2 / 18, dtype=torch.float64)))}")

# %% [markdown]
# ### 1.2 Levenberg-Marquardt damping and the step
#
# SGN minimises the damped quadratic model of the minibatch loss,
#
# $$m(\Delta) = g^\top\Delta + \tfrac12\,\Delta^\top (G + \rho I)\,\Delta, \qquad
#   (G + \rho I)\,\Delta = -g,$$
#
# and steps $\theta \leftarrow \theta + \alpha\Delta$. The damping ρ interpolates between two
# methods: as ρ → ∞, $\rho\Delta \to -g$ (a gradient step of length 1/ρ); as ρ → 0 (on the range of
# G) Δ is the Gauss-Newton step. It also makes the system positive definite (G alone is singular: P
# parameters, at most N·C non-zero eigenvalues) and acts as a trust region: the step solves
# $\min m_0(\Delta)$ subject to $\|\Delta\| \le r(\rho)$ with r decreasing in ρ.

# %%
g0 = curvature.flatten(curvature.GGNOperator(tiny, "mse", xs, ys_reg).gradient)
G = dense_from_products(lambda v: curvature.ggn_vector_product(tiny, "mse", xs, ys_reg, v))
I = torch.eye(P, dtype=torch.float64)
for rho in (1e8, 1e-2, 1e-6):
    d = torch.linalg.solve(G + rho * I, -g0)
    cos = float(torch.dot(d, -g0) / (d.norm() * g0.norm()))
    print(f"rho = {rho:7.0e}: |Delta| = {float(d.norm()):.2g}, cos(Delta, -g) = {cos:.2f}")
big = torch.linalg.solve(G + 1e8 * I, -g0) * 1e8
print("rho -> inf gives the gradient step -g/rho:", bool(torch.allclose(big, -g0, rtol=1e-6, atol=1e-12)))
norms = [float(torch.linalg.solve(G + r * I, -g0).norm()) for r in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)]
print("|Delta| decreases as rho grows (a trust region):", all(a > b for a, b in zip(norms, norms[1:])))

# %% [markdown]
# ### 1.3 Conjugate gradient on the damped system
#
# P is too large for a solve, so SGN runs k iterations of (preconditioned) CG from Δ₀ = 0, needing only
# products $(G + \rho I)p$. CG from zero minimises the quadratic model over the growing Krylov spaces
# $\mathcal K_j = \operatorname{span}\{g, Ag, \dots, A^{j-1}g\}$, so $m(\Delta_j)$ decreases
# monotonically with j, $\Delta_1$ is the Cauchy (steepest-descent) point, and in exact arithmetic CG
# reaches the solution after at most P iterations (at most the number of distinct eigenvalues). With
# few iterations, SGN(k) is a truncated Newton method that stays in the low-curvature-aware subspace.
# The reference stops at $\|r\|_\infty \le 10^{-6}$ or k iterations; k always binds in practice.

# %%
rho = 1e-3
A = G + rho * I
exact = torch.linalg.solve(A, -g0)
sol, info = krylov.conjugate_gradient(lambda v: A @ v, -g0, max_iter=4 * P, tol=1e-14)
print(f"CG ({info.iterations} iterations) equals the dense solve: "
      f"{bool(torch.allclose(sol, exact, rtol=1e-8, atol=1e-10))}")
model_vals = []
for k in range(1, 8):
    dk, _ = krylov.conjugate_gradient(lambda v: A @ v, -g0, max_iter=k, tol=0.0)
    model_vals.append(float(g0 @ dk + 0.5 * dk @ A @ dk))
print("quadratic model decreases with every CG iteration:", all(a > b for a, b in zip(model_vals, model_vals[1:])))
cauchy = -(g0 @ g0) / (g0 @ A @ g0) * g0
d1, _ = krylov.conjugate_gradient(lambda v: A @ v, -g0, max_iter=1, tol=0.0)
print("one CG iteration is the Cauchy point:", bool(torch.allclose(d1, cauchy, rtol=1e-10)))

# %% [markdown]
# ### 1.4 The trust-region ratio
#
# After the trial step the loss is re-evaluated on the **same** minibatch, and the ratio of the actual
# to the predicted change decides the next damping (the Levenberg-Marquardt rule, *Numerical
# Optimization* Alg. 4.1, with the reference's constants):
#
# $$\text{ratio} = \frac{L(\theta + \Delta) - L(\theta)}{m(\Delta)}, \qquad
#   \rho \leftarrow \begin{cases} 1.5\,\rho & \text{ratio} < 1/4 \\
#   \max(\rho/1.5,\ \rho_{\min}) & \text{ratio} > 3/4 \\ \rho & \text{otherwise.}\end{cases}$$
#
# The step itself is never rejected; the new ρ applies from the next iteration. A backtracking Armijo
# line search (halving α at most 10 times) guards the step. When the quadratic model is exact (a
# linear model with squared loss: then $G$ is the Hessian), the ratio is 1 up to the damping term and ρ
# shrinks; when the step overshoots, the ratio drops and ρ grows.

# %%
print("ratio 0.1 -> rho x 1.5:", math.isclose(trust_region_update(1e-4, 0.1, 1e-6), 1.5e-4),
      "| ratio 0.5 -> unchanged:", trust_region_update(1e-4, 0.5, 1e-6) == 1e-4,
      "| ratio 0.9 -> rho / 1.5:", math.isclose(trust_region_update(1e-4, 0.9, 1e-6), 1e-4 / 1.5),
      "| floor:", trust_region_update(1.2e-6, 0.9, 1e-6) == 1e-6)
# a linear least-squares problem: the quadratic model is exact, one SGN step with tiny damping solves it
torch.manual_seed(1)
lin = torch.nn.Linear(5, 1).double()
xl = torch.randn(64, 5, dtype=torch.float64)
yl = xl @ torch.randn(5, 1, dtype=torch.float64) + 0.3
opt = SGN(lin, "mse", rho=1e-8, rho_min=1e-10, cg_max_iter=6, cg_warmup_steps=0)
st = opt.step(xl, yl)
print(f"linear least squares, one step: loss {st.loss:.2g} -> {st.new_loss:.1g}; trust ratio {st.trust_ratio:.3f}; "
      f"rho decreased: {st.next_rho < st.rho}; alpha {st.alpha:g}")

# %% [markdown]
# ### 1.5 Why forward mode makes the product cheap
#
# $Gv = J^\top (H_L (Jv))$ is computed without forming J: a forward-mode Jacobian-vector product gives
# $Jv$ (one pass, like the forward pass, carrying a tangent), the closed-form $H_L$ maps it to
# $w$ (O(N·C)), and one reverse-mode pass gives $J^\top w$. The cost is a small multiple of one
# gradient, independent of P. Reverse mode alone needs a double-backward trick for Jv; building $J$
# explicitly costs N·C backward passes. Below: Jv from forward mode equals the explicit Jacobian times
# v, and (timing, varies by machine) one product on the MNIST MLP at batch 1000 costs about one gradient.

# %%
v = torch.randn(P, dtype=torch.float64)
op = curvature.GGNOperator(tiny, "cross_entropy", xs, ys_cls, method="jvp")
jv_fwd = op.jacobian_vector_product(curvature.unflatten_like(v, theta0))
jv_explicit = (torch.func.jacrev(f_flat)(flat0).reshape(-1, P) @ v).reshape(6, 3)
print("forward-mode Jv equals the explicit J v:", bool(torch.allclose(jv_fwd, jv_explicit, atol=1e-13)))
for method in curvature.METHODS:
    Gv = curvature.ggn_vector_product(tiny, "cross_entropy", xs, ys_cls, curvature.unflatten_like(v, theta0),
                                      method=method)
    print(f"  method {method:15s} G v equals the dense G v:",
          bool(torch.allclose(curvature.flatten(Gv), dense_ggn_explicit("cross_entropy", ys_cls) @ v, atol=1e-13)))


# %% tags=["nbval-ignore-output"]
def median_time(fn, repeats=15):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


mnist_x = data.load("mnist", "train").x[:1000].float().div(255).reshape(1000, -1)
mnist_y = data.load("mnist", "train").y[:1000]
mlp = sgn_reference_init(models.mlp([784, 20, 20, 20, 10], "sigmoid"))


def gradient_pass():
    mlp.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(mlp(mnist_x), mnist_y).backward()


op_mnist = curvature.GGNOperator(mlp, "cross_entropy", mnist_x, mnist_y)
vec = [torch.randn_like(p) for p in mlp.parameters()]
t_grad, t_prod = median_time(gradient_pass), median_time(lambda: op_mnist(vec))
print(f"MNIST MLP, batch 1000: gradient {1e3 * t_grad:.2f} ms, GGN-vector product (linearisation reused) "
      f"{1e3 * t_prod:.2f} ms = {t_prod / t_grad:.2f} gradients (shared CPU: noisy)")

# %% [markdown]
# ## 2. The implementation, explained
#
# * **`curvlab.curvature.GGNOperator(model, loss, inputs, targets)`** linearises the network once per
#   SGN iteration: one forward pass gives the outputs, the loss and (on request) the gradient
#   $g = J^\top \partial L/\partial f$; each call `op(v)` then costs one tangent pass (Jv) and one
#   backward pass (Jᵀw). The default `method="traced"` traces the forward-mode pass once per model and
#   input shape (`make_fx`) and keeps only the part linear in the tangent, so a product does not re-run
#   the primal network; `"jvp"` uses `torch.func.jvp` per product. `curvature.loss_derivatives` holds
#   the closed-form $H_L$ for cross-entropy and the MSE conventions.
# * **`curvlab.krylov.conjugate_gradient(matvec, rhs, max_iter, tol, preconditioner)`** is textbook
#   preconditioned CG on flat vectors; it returns the final residual, which SGN reuses to evaluate
#   $\Delta^\top(G+\rho I)\Delta$ without an extra product.
# * **`curvlab.SGN(model, loss, ...)`** is the optimizer. `step(inputs, targets)` runs: gradient (and
#   optional momentum) → CG on $(G + \rho I)\Delta = -g$ with k iterations (10 during the first 9
#   steps: the reference's `MIN_CG_ITERS`/`K_CG` warm-up) → trial loss on the same minibatch →
#   trust-region update of ρ → Armijo backtracking on α → update; it returns `SGNStats` (loss, ρ, α,
#   CG iterations, trust ratio, backtracks). Deviations from the reference are options, not silent
#   changes: the textbook Armijo rule by default (`line_search_rule="reference"` keeps the reference's
#   fixed right-hand side), non-finite trial points are rejected instead of raising.
# * **Trial points without the first layer's matmul.** The first layer's pre-activation
#   $z_1 = xW_1^\top + b_1$ is affine in θ, so along the line $\theta + s\Delta$ it moves exactly as
#   $z_1 + s\,J_{z_1}\Delta$. CG's solution is $\Delta = \sum_k a_k p_k$ over its search directions, and
#   each product $Gp_k$ has already computed $J_{z_1}p_k$ in its tangent pass. `conjugate_gradient`
#   reports each $a_k$ (`on_step`), `LineShortcut.record_step` (`curvlab._line_search`) accumulates
#   $\sum_k a_k J_{z_1}p_k$, and `LineShortcut.outputs` runs the network from the moved $z_1$. The trial losses are those of
#   a full forward pass up to round-off; on the MNIST MLP the 784-wide matmul is skipped, which is most
#   of the forward pass. The check below compares the two on the tiny network, in float64.
# * **`curvlab.sgn.sgn_reference_init`** reproduces the reference's initialisation: N(0, 1) weights for
#   the sigmoid MLPs (under a fixed seed, so every run starts from the same weights; `--seed` only
#   changes the shuffling), Glorot-like uniform bounds under `RandomState(1)` for the CNNs, with the FC
#   bound using the network's output size.
#

# %%
line = LineShortcut(curvature.GGNOperator(tiny, "cross_entropy", xs, ys_cls))
delta_line, _ = krylov.conjugate_gradient(lambda u: [a + 0.1 * b for a, b in zip(line(u), u)],
                                          [-t for t in line.op.gradient], max_iter=3, tol=0.0,
                                          on_step=line.record_step)
for s_line in (1.0, 0.5):
    point = curvature.unflatten_like(flat0 + s_line * curvature.flatten(delta_line), theta0)
    full = torch.func.functional_call(tiny, dict(zip(curvature.parameter_names(tiny), point)), (xs,))
    print(f"s = {s_line}: outputs from the moved first layer equal a full forward pass:",
          bool(torch.allclose(line.outputs(point, s_line), full, rtol=1e-12, atol=1e-12)), f"({line.last_path})")

# %% [markdown]
# One SGN(3) iteration on a real MNIST batch (after the 10-CG warm-up is switched off):

# %%
mlp_demo = sgn_reference_init(models.mlp([784, 20, 20, 20, 10], "sigmoid"))
demo = SGN(mlp_demo, "cross_entropy", cg_max_iter=3, cg_warmup_steps=0)
for _ in range(3):
    s = demo.step(mnist_x, mnist_y)
    print(f"step {s.step}: loss {s.loss:.2g} -> {s.new_loss:.2g}; CG iterations {s.cg_iterations}; "
          f"rho {s.rho:.1e} -> {s.next_rho:.1e}; alpha {s.alpha:g}; backtracks {s.backtracks}")


# %% [markdown]
# ## 3. The benchmarks: setup
#
# | benchmark | data / preprocessing (reference quirks kept) | model | batch | loss |
# |---|---|---|---|---|
# | Boston housing | real, 404 / 102; X divided by its max, **each split by its own max**; y divided by its max | MLP 13-100-100-1 sigmoid, N(0,1) init | 101 | MSE (no ½) |
# | sine f = 10, 100 | generated, x ~ U(−1, 1), y = sin(f x) + N(0, 0.01²), 10 000 points, **first 30 % test** | MLP 1-20-20-20-1 sigmoid, N(0,1) init | 1000 | MSE (no ½) |
# | MNIST | real, pixels / 255, flattened | MLP 784-20-20-20-10 sigmoid, N(0,1) init (784-10-10-10 for SGN(1), SGN(2), as the reference ran them) | 1000 | CE |
# | Fashion-MNIST | real, **per-image, per-channel standardisation** | LeNet `models.sgn_arch_1` (44 426) | 1000 | CE |
# | CIFAR-10 | stand-in `fashion_mnist_32` unless CIFAR-10 is installed; per-image standardisation | `models.sgn_arch_4` (122 570) | 1000 | CE |
#
# SGD is plain (no momentum, constant learning rate). Each run goes through `curvlab.experiment.run`
# (cached, seeded records) and `curvlab.training.fit`; the per-epoch training loss is the mean of the
# epoch's minibatch losses (the reference's `avg_loss`). **Timing includes evaluation** (the reference
# timed its test passes, every 50 iterations and at each epoch end for classification, each epoch end
# for regression): `time_evaluation=True`. The one-off trace of the curvature product (the analogue of
# Theano's graph compilation) is done before the clock starts. The clock counts the optimizer steps and
# the evaluations, not the loop's own batching overhead; for the sub-millisecond steps of Boston and sine
# that overhead is a sizeable share of the wall time (printed below per benchmark), and it favours the
# method with more, cheaper steps (SGD) when budgets are in seconds. Per-step ρ and α are recorded (at most
# 2 000 evenly spaced steps per run; long runs keep at most 1 000 evaluations, epoch ends first).

# %%
def run_benchmark(bench):
    return rs.run_records(bench, SCALE, SEED_LIST)     # through curvlab.sweep (CURVLAB_WORKERS=N: Dask)


stored = rs.load        # stored records (committed paper-scale ones mapped as legacy, see rs.as_legacy)
print("SGN settings in every SGN record's key, e.g. SGN(3):", rs.sgn_settings(3))

# %% [markdown]
# Reading records and the reference's logs into one long table (one row per evaluation); plots average
# the seeds epoch by epoch and place each epoch at the seeds' mean *measured* clock (training only for
# new records). The reference's own logs only allow e × (mean time per epoch), its notebook's rule.

# %%
TEST_METRIC = {b: ro.metric_of(b) for b in ALL}
records_frame, epoch_ends, epoch_means, config_order = ro.records_frame, ro.epoch_ends, ro.epoch_means, ro.config_order


clock_axis, seeds_of, describe = rep.clock_axis, rep.seeds_of, rep.describe


def untimed(line):
    """A save_figure summary without its clock-dependent columns (those vary from run to run)."""
    return "; ".join(p for p in line.split("; ") if not p.startswith("time"))


def show(fig, fig_id, data, bench):
    """Save a figure with its data (the summary line without clock columns) and display it."""
    data = data.copy()
    data.insert(0, "benchmark", bench)
    print(untimed(plotting.save_figure(fig, PAPER, fig_id, data)))
    plt.show()
    plt.close(fig)


def draw(df, bench, title, fig_id, clock):
    fig, mean = sf.curves(df, bench, title, clock)
    show(fig, fig_id, mean, bench)
    return mean


# %% [markdown]
# Read-out rules for "after T seconds". **Reference rule** (its notebook; spec §5 i): the mean time per
# epoch over seeds, $\bar t$, gives the epoch index $e = \lfloor T/\bar t\rfloor$, and the cell is the
# seed-mean test value after epoch e (so a constant time per epoch is assumed). **True wall-clock**:
# per seed, the last evaluation whose clock is ≤ T, then the seed mean. A run that finished its epoch
# budget before T is read at its end (column "ended before T"); a diverged run that stopped before T
# shows "–".

# %%
read_reference_rule, read_wall_clock, after_T_table = ro.read_reference_rule, ro.read_measured, ro.after_T_table
PAPER_READ_OUT, read_out_times = rep.PAPER_READ_OUT, rep.read_out_times

# %% [markdown]
# ### The reference's logs: recomputing its table
#
# The reference's README table (spec §3.3) is recomputed from its own per-epoch logs with the rule above;
# a cell matches when it is within 0.1 point of the printed number. This validates the read-out rule
# that the tables below apply to our runs. (The spec notes one known mismatch: CIFAR-10 SGD(0.01) at
# 650 s.)

# %%
README_TABLE = {   # spec §3.3: test accuracy (%) after T seconds, as printed in the reference README
    ("mnist", 25): {"SGD(0.001)": 17.2, "SGD(0.01)": 35.3, "SGD(0.1)": 71.9, "SGD(1)": 89.8, "SGD(10)": 11.6,
                    "SGN(3)": 92.9, "SGN(5)": 92.8, "SGN(10)": 91.6},
    ("mnist", 100): {"SGD(0.001)": 25.4, "SGD(0.01)": 58.2, "SGD(0.1)": 85.5, "SGD(1)": 93.0, "SGD(10)": 93.0,
                     "SGN(3)": 94.0, "SGN(5)": 93.7, "SGN(10)": 91.5},
    ("fashion", 50): {"SGD(0.001)": 63.1, "SGD(0.01)": 82.3, "SGD(0.1)": 86.7, "SGN(2)": 84.5, "SGN(3)": 85.2,
                      "SGN(5)": 85.6, "SGN(10)": 85.4},
    ("fashion", 150): {"SGD(0.001)": 76.5, "SGD(0.01)": 85.5, "SGD(0.1)": 88.5, "SGN(2)": 86.2, "SGN(3)": 87.2,
                       "SGN(5)": 87.8, "SGN(10)": 86.0},
    ("cifar10", 650): {"SGD(0.001)": 10.0, "SGD(0.01)": 19.0, "SGD(0.1)": 63.1, "SGN(2)": 44.9, "SGN(3)": 49.3,
                       "SGN(5)": 56.9, "SGN(10)": 64.7},
    ("cifar10", 2000): {"SGD(0.1) longer": 60.9, "SGN(10)": 71.0},
}
REF_FRAMES = {b: sgn_reference.frame(b) for b in ALL}
rows = []
for (bench, T), cells in README_TABLE.items():
    ours = read_reference_rule(REF_FRAMES[bench], T, "test_accuracy")
    for lab, printed in cells.items():
        value, e, _ = ours[lab]
        rows.append({"benchmark": bench, "T (s)": T, "config": lab, "README": printed,
                     "recomputed": round(100 * value, 1), "epoch": e,
                     "match ±0.1": bool(abs(100 * value - printed) <= 0.1 + 1e-9)})
readme_check = pd.DataFrame(rows)
print(plotting.save_table(readme_check, PAPER, "reference_table_recomputed", float_format="%.1f"))
bad = readme_check[~readme_check["match ±0.1"]]
print(f"\n{int(readme_check['match ±0.1'].sum())} of {len(readme_check)} README cells recomputed within ±0.1; "
      f"mismatches: {', '.join(f'{r.benchmark} {r.config} @ {r._2} s' for r in bad.itertuples()) or 'none'}")


# %%
def reference_sgd_epoch_time(bench):
    """Mean time per SGD epoch in the reference's logs (all learning rates, seeds; 'longer' runs excluded)."""
    return rep.reference_sgd_epoch_time(REF_FRAMES[bench])


our_sgd_epoch_time = ro.sgd_epoch_time


def overlay(df, bench, title, fig_id):
    """Ours vs the reference in SGD-epoch equivalents; a stand-in's reference curves get their own row."""
    separate = bench == "cifar10" and CIFAR_DATA != "cifar10"
    fig, both = sf.overlay(df, REF_FRAMES[bench], bench, title, separate,
                           "real CIFAR-10 (reference logs, GTX TITAN X) - not comparable with the stand-in")
    show(fig, fig_id, both, bench)


# %% [markdown]
# Each benchmark section below runs (if selected) or loads its records at this notebook's scale, then
# renders the paper-scale records if they exist. `SUMMARY` collects the numbers the scorecard uses.

# %%
SUMMARY = {}


def scale_records(bench):
    """Records at this notebook's scale (run now if selected) and the stored paper-scale ones."""
    here = run_benchmark(bench) if bench in SELECTED else stored(bench, SCALE)
    paper = here if SCALE == "paper" else stored(bench, "paper")
    if SCALE == "paper" and not here:
        print(f"{bench}: not run at paper scale")
    return here, paper


# %% [markdown]
# ## 4. Boston housing
#
# **Reference** (10 s per run on a laptop CPU, 5 seeds): SGN(1–20) reach test MSE ≈ 0.010–0.011
# (normalised targets); the best SGD (lr 0.01) 0.0267 after 10 s; SGD lr 0.1 blows up to 1e6 for about
# 10 epochs before recovering; SGD lr 1 diverges (NaN; omitted from the reference's plots, marked here).
# **Here (ci):** full data and grids, 40 epochs per run instead of 10 s.

# %%
def regression_section(bench, title_data):
    return rep.regression_section(bench, title_data, *scale_records(bench), SCALE, draw, overlay)

SUMMARY["boston"] = regression_section("boston", "Boston housing (real), MLP 13-100-100-1, batch 101")
for tag, info in SUMMARY["boston"].items():
    b = ro.blow_ups(info["df"], "SGD(0.1)", "test_loss", 1e3).dropna(subset=["first_epoch"])
    print(f"[{tag}] Boston SGD(0.1) seeds with test MSE > 1e3: " + ("; ".join(
        f"seed {r.seed} from epoch {r.first_epoch:g} (max {r.max:.1e}, last {r.last:.1e})" for r in b.itertuples())
        or "none"))

# %% [markdown]
# ## 5. Sine regression, frequency 10
#
# **Reference** (100 s per run, laptop CPU): SGN(20/30/40) below 2e-4 test MSE within 10 s and ≈ 1.04e-4
# (the noise floor is 1e-4) by 20–30 s; SGN(10) 1.3e-4 at 100 s; SGD stays near 0.45 (lr 0.1 best,
# 0.26 at the end); lr 1 diverges. **Here (ci):** full data, 25 epochs per run instead of 100 s, SGN
# grid {2, 3, 10, 20, 30}. Our data are drawn by the same generator with our own seed (the reference's
# data file is a different draw).

# %%
SUMMARY["sine_10"] = regression_section("sine_10", "Sine f = 10 (generated), MLP 1-20-20-20-1, batch 1000")

# %% [markdown]
# ## 6. Sine regression, frequency 100
#
# **Reference:** SGD ≈ 0.50 for every learning rate (the "predict the mean" level, Var(sin) = 0.5); SGN
# improves with k up to 20–30: SGN(30) 0.365, SGN(20) 0.370, SGN(10) 0.41, SGN(2) 0.496 after 100 s.

# %%
SUMMARY["sine_100"] = regression_section("sine_100", "Sine f = 100 (generated), MLP 1-20-20-20-1, batch 1000")

# %% [markdown]
# Timings of the regression runs (machine-dependent, not checked): epochs completed, time per epoch,
# and the share of the wall time that the clock counts (the rest is the loop's batching overhead).

# %% tags=["nbval-ignore-output"]


for bench in ("boston", "sine_10", "sine_100"):
    t = rep.timing_summary(bench, SUMMARY.get(bench, {}), REF_FRAMES.get(bench))
    if len(t):
        print(plotting.save_table(t, PAPER, f"timing_{bench}", float_format="%.3g"))


# %% [markdown]
# ## 7. MNIST, MLP 784-20-20-20-10
#
# **Reference** (GTX TITAN X; SGD 600 epochs, SGN 100 epochs): after 25 s SGN(3) 92.9 % vs SGD 17–90 %
# (best lr 1: 89.8 %); after 100 s SGN(3) 94.0 % vs SGD(1) and SGD(10) 93.0 %. **Here (ci):** full data
# and grids, SGD 16 epochs, SGN 3 epochs; read-outs at half and all of the SGN(3) run's clock
# (scaled down from 25 / 100 s; the values are printed with the table).

# %%
def classification_section(bench, title_data):
    return rep.classification_section(bench, title_data, *scale_records(bench), SCALE, draw, overlay)

SUMMARY["mnist"] = classification_section("mnist", "MNIST (real), MLP 784-20-20-20-10 sigmoid, batch 1000")


# %% [markdown]
# Equal-epoch comparison (deterministic, so checked): test accuracy after the first epoch and at the
# end of the SGN budget.

# %%
def equal_epochs(bench, tag="ci" if SCALE == "ci" else "paper"):
    print(rep.equal_epochs(bench, SUMMARY[bench], tag))

equal_epochs("mnist")
if SCALE == "ci" and SUMMARY["mnist"].get("paper"):
    equal_epochs("mnist", "paper")

# %% [markdown]
# Test accuracy after T seconds, by the reference's rule and by true wall-clock. Timings depend on the
# machine (and the two CPU cores were shared with other jobs), so this cell's output is not checked.
# Besides T itself, the paper-scale table adds T scaled by the ratio of SGD epoch times
# (ours / reference's), which compares at the same number of SGD-epoch equivalents across hardware.

# %%
TABLES = {}


def time_tables(bench):
    table = rep.time_table(bench, SUMMARY[bench], REF_FRAMES.get(bench))
    if table is None:
        print(f"{bench}: no records")
        return None
    TABLES[bench] = table
    print(plotting.save_table(table, PAPER, f"after_T_{bench}", float_format="%.1f"))
    return table


# %% tags=["nbval-ignore-output"]
_ = time_tables("mnist")

# %% [markdown]
# ## 8. Fashion-MNIST, LeNet (`sgn_arch_1`)
#
# **Reference** (GPU; SGD 100 epochs, SGN 10 epochs): SGD(0.1) leads at both read-outs (86.7 % at 50 s,
# 88.5 % at 150 s) against the best SGN (85.6 % SGN(5), 87.8 % SGN(5)); SGD(1) diverges at once; SGN(10)
# reaches 88.8 % after 10 epochs. **Here (ci):** a 2 000 / 1 000 image subset, batch 250 (not 1000),
# the full SGD grid for 20 epochs, SGN(3) only for 2 epochs (the LeNet costs 0.1–0.6 s per SGD step at
# batch 1000 on this shared CPU). With 16 SGN iterations, 9 of them are the 10-CG warm-up. Read-outs at
# half and all of the SGN(3) run's clock. The full configuration is kept for `SCALE = "paper"` (it
# needs a GPU).

# %%
SUMMARY["fashion"] = classification_section("fashion", "Fashion-MNIST (real), LeNet (sgn_arch_1)")
equal_epochs("fashion")

# %% tags=["nbval-ignore-output"]
_ = time_tables("fashion")

# %% [markdown]
# ## 9. CIFAR-10, CNN (`sgn_arch_4`)
#
# **Reference** (GPU; SGD 100 epochs, "longer" SGD(0.1) 250 epochs, SGN 10 epochs): after 650 s SGN(10)
# 64.7 % beats SGD(0.1) 63.1 %; after 2000 s SGN(10) 71.0 % vs the longer SGD(0.1) 60.9 %. SGD(0.1) sits
# at loss 2.30 for 3 epochs; SGD(1e-3) learns nothing. **Here (ci):** the stand-in `fashion_mnist_32`
# (Fashion-MNIST padded to 3×32×32 — its accuracies are *not* comparable with CIFAR-10's), 1 000 / 500
# images, batch 100, SGD {0.01, 0.1, 1} for 4 epochs, SGN(3) for 2 epochs; read-outs at 2 s and 6 s.

# %%
cifar_title = ("CIFAR-10 (real)" if CIFAR_DATA == "cifar10" else
               "CIFAR-10 stand-in fashion_mnist_32 (Fashion-MNIST, 3x32x32)") + ", CNN (sgn_arch_4)"
SUMMARY["cifar10"] = classification_section("cifar10", cifar_title)
equal_epochs("cifar10")

# %% tags=["nbval-ignore-output"]
_ = time_tables("cifar10")


# %% [markdown]
# ## 10. The ρ and α traces
#
# The trust region starts at ρ₀ = 1e-4, raises ρ while the quadratic model over-predicts the decrease,
# then lowers it to the floor ρ_min = 1e-6 (reference: peak 2.3e-4 to 2.9e-2, floor after about 20
# iterations on MNIST SGN(3)). The line search is rarely active on classification (mean α 0.99–1.0) but
# active on regression with many CG iterations (reference: Boston SGN(10) backtracks on 43 % of steps).

# %%
def traces(tag):
    return rep.traces(SUMMARY, tag, ALL)


def draw_traces(tag, fig_id):
    tr, stats = traces(tag)
    if tr.empty:
        print(f"no SGN records at {tag} scale")
        return stats
    names = {"cifar10": "cifar10" if CIFAR_DATA == "cifar10" else "cifar10 stand-in (fashion_mnist_32)"}
    fig, w = sf.rho_alpha(tr, f"Median damping and share of backtracked steps per window ({tag} scale, "
                              "first seed)", names)
    print(plotting.save_figure(fig, PAPER, fig_id, w))
    plt.show()
    plt.close(fig)
    return stats


# %%
if SCALE == "ci":
    paper_trace_stats = draw_traces("paper", "rho_alpha_paper")
    if not paper_trace_stats.empty:
        print(plotting.save_table(paper_trace_stats, PAPER, "rho_alpha_paper", float_format="%.3g"))


# %%
def backtracking(tag, bench="mnist"):
    """Share of backtracked steps per SGN(k), ours (first seed) and the reference's (seed mean, full logs)."""
    _, st = traces(tag)
    ref = sgn_reference.run_table(bench).groupby("config")["backtracked_share"].mean()
    parts = [f"{r['config']} {r['backtracked (%)']:.2f} % (reference {100 * ref.get(r['config'], np.nan):.2f} %)"
             for _, r in st[st["benchmark"] == bench].iterrows()]
    print(f"[{tag}] {bench}: steps with a backtrack: " + ("; ".join(parts) or "no records"))


for tag in dict.fromkeys([SCALE, "paper"]):
    for bench in ("mnist", "boston"):
        backtracking(tag, bench)

# %% [markdown]
# **Reading the traces.** The pattern of the reference holds: ρ rises during the first iterations and
# falls to the floor in most runs; on MNIST the line search is rarely active (the shares of steps with
# a backtrack, ours and the reference's, are printed above, computed from the records and the reference's
# full logs). One number differs in size, not in kind: the Boston SGN(10) paper-scale run backtracks on
# a smaller share of its steps than the reference's (printed above). Our 10-second runs take about 25 times
# more iterations than the reference's (about 2 700 against about 110), and backtracking is concentrated
# in the early iterations: over the first 160 (the ci run) it is about 40 %, close to the reference. Two
# further differences push the same way: our default Armijo rule is the textbook one (the reference
# compares every trial with the right-hand side of α₀, which backtracks more; `line_search_rule=
# "reference"` reproduces it), and our data split of Boston is a different random 404/102 split.

# %% [markdown]
# ## 11. Verdicts
#
#
# Each of the reference's claims is a function of the records (`curvlab.repro.sgn_verdicts`), with the
# seeds and their min–max spread: a gap within the spread is "inconclusive", a best SGD rate at the edge
# of its grid "inconclusive (lr at grid edge)"; read-outs after T use the measured clock (training only
# for the ci records; training + evaluation for the legacy paper-scale records). The list is written to
# `tables/sgn/scorecard.csv` and rendered into `papers.md` by `python -m curvlab.repro.papers`.

# %% tags=["nbval-ignore-output"]
from curvlab import verdicts  # noqa: E402
from curvlab.repro import sgn_verdicts as sv  # noqa: E402


def claims(tag):
    out = []
    for bench in ALL:
        info = SUMMARY.get(bench, {}).get(tag)
        if info and bench in sgn_reference.REGRESSION:
            out += sv.regression_claims(info["df"], bench, tag, rs.SETTINGS[tag][bench]["sgd"])
        elif info:
            out += sv.classification_claims(info["df"], bench, tag, read_out_times(info["df"], bench, tag))
    return out


CLAIMS = claims(SCALE) + (claims("paper") if SCALE == "ci" else [])
for v in CLAIMS:
    print(v.sentence())
verdicts.save_scorecard(CLAIMS, PAPER)

# %% [markdown]
# ### Run at paper scale
#
# `make reproduce SCALE=paper` (or `papermill -p SCALE paper notebooks/02_sgn.ipynb out.ipynb`) runs the
# reference's settings; `CURVLAB_WORKERS=N` spreads the runs over N single-thread Dask workers, and
# records already on disk are skipped, so an interrupted run resumes. The estimate below is computed
# from this notebook's measured ci timings (one thread per run).

# %% tags=["nbval-ignore-output"]
ci_recs = {b: SUMMARY[b]["ci"]["records"] for b in ALL if SUMMARY.get(b, {}).get("ci")}
cost = rs.paper_cost(ci_recs)
print(plotting.to_markdown(cost, "%.3g"))
print(f"total ≈ {cost['cpu_hours'].sum():.0f} single-thread CPU hours ({cost['runs'].sum()} runs); "
      "Fashion and CIFAR-10 at full size want a GPU")


# %% [markdown]
# **What the runs show.**
#
# * *Regression (Boston, sine).* SGN(k) reaches lower training and test loss than SGD at every learning
#   rate, at ci scale (equal epochs) and at paper scale (equal seconds); SGD(1) diverges on all three.
#   At paper scale our absolute Boston losses are lower than the reference's for *both* methods
#   (SGN 0.005 vs 0.010, SGD 0.014 vs 0.027) because on this CPU the same 10 s buy about 13× more SGD
#   epochs and 24× more SGN(10) epochs than on the reference's 2017 laptop CPU with Theano; the
#   ordering and the factor between the methods (2–3×) are what carry over. SGD(0.1) blows up in some
#   seeds (which seeds, from which epoch and to what test MSE is printed under the Boston figures,
#   computed from the records) and the blow-up dominates that configuration's seed mean (the reference
#   reports a transient blow-up for lr 0.1).
# * *Sine f = 10 (paper scale, seeds 1–5).* SGN(k) for k ≥ 10 ends at the noise floor (test MSE
#   1.0e-4, seed means; reference SGN(10) 1.3e-4), SGN(2) / SGN(3) / SGN(5) at 1.7e-4 / 1.4e-4 /
#   1.1e-4, and SGD(1) diverges in every seed, as in the reference. Unlike the reference (SGD between
#   0.26 and 0.46 after 100 s), SGD(0.1) and SGD(0.01) fit the sine here too (3.8e-4 and 4.5e-4): this
#   CPU runs about 37 000 SGD epochs in 100 s against the reference's 1 600. SGN still ends lower, by
#   about 4×, not by three orders of magnitude; SGD(0.001) stays at 0.45.
# * *Sine f = 100 (paper scale, seeds 1–5).* Every SGD rate stays at the "predict the mean" level (test
#   MSE 0.49), while SGN improves with k: 0.45 / 0.40 / 0.38 / 0.33 / 0.32 / 0.30 / 0.31 for
#   k = 2 / 3 / 5 / 10 / 20 / 30 / 40 after 100 s (seed means; reference 0.496 / 0.47 / 0.449 / 0.41 /
#   0.370 / 0.365 / 0.39). Our values are lower for every k (SGN(10) completes about 3 000 epochs here
#   against 164 in the reference). The best k is 30, as in the reference's optimum at k = 20–30, but
#   k = 40 is only 0.01 worse, within the spread over seeds (0.29–0.34): on this CPU, with cheaper CG
#   iterations, the optimum is flat.
# * *MNIST (paper scale, seeds 1–5).* With the reference's initialisation the runs reproduce the
#   reference's logs closely: our SGD(1e-3) and SGD(1e-2) curves lie on the reference's, SGN(3)
#   reaches 87.3 / 93.4 / 94.3 % after 1 / 10 / 100 epochs (seed means; reference 86.6 / 93.0 /
#   94.1 %), SGN(10) ends at a training loss of about 0.21 (0.19–0.24 over seeds; reference
#   0.22–0.27), SGD(1) gives 92.5 % after 100 and 94.0 % after 600 epochs (reference 92.5 / 93.9 %).
#   Read at the same number of SGD-epoch equivalents as the reference's 25 s and 100 s, the table is
#   reproduced to within about half a point (SGN(3) 93.3 / 94.4 %, SGD(1) 89.8 / 93.0 %, SGD(0.1)
#   71.9 %; reference 92.9 / 94.0, 89.8 / 93.0, 71.9 %). On our own clock an SGN(3) epoch costs about
#   3 SGD epochs (about 4.4 on the reference's GPU), and our SGN runs finish their 100 epochs in about
#   a minute: SGN(3) leads at 25 s (94.1 % against the best SGD, SGD(10), at 93.3 %) and at 100 s
#   (94.3 % against SGD(1) at 94.0 %).
# * *Fashion-MNIST (ci proxy only).* On the small subset SGD(0.1) and SGN(3) end within a few points
#   of each other at both scaled-down read-outs, and which one leads follows the timing (an earlier
#   run, with a slower cross-entropy, had SGD(0.1) ahead), so the reference's unadvertised ordering (SGD(0.1) ahead) is
#   neither confirmed nor refuted here; with 16 SGN iterations, 9 of them the 10-CG warm-up, this is a
#   weak check. The full configuration needs a GPU.
# * *CIFAR-10 (ci: stand-in only).* After the same 2 epochs SGN(3) is far ahead of every SGD rate on
#   the Fashion-MNIST-based stand-in, and it also leads at both ci read-outs, although its first
#   epoch (all warm-up iterations with 10 CG products) costs about as much as 7 SGD epochs. Nothing
#   here says how the method does on CIFAR-10 itself.

# %% [markdown]
# ## 12. Reference vs ours
#
# Reference number | ours at paper scale (with hardware and seeds) | ours at ci scale | verdict. The
# reference's time-based numbers were measured on its hardware (a laptop CPU for the regressions, a GTX
# TITAN X for the classifiers); our paper-scale numbers come from a 2-core CPU shared with other jobs,
# so a read-out at T seconds compares different amounts of work: the orderings, not the seconds, are
# the comparable part. Not checked by nbval (it holds time read-outs).

# %% tags=["nbval-ignore-output"]
def info_of(bench, tag):
    return SUMMARY.get(bench, {}).get(tag)


def hw_note(bench):
    info = info_of(bench, "paper")
    return f" [seeds {seeds_of(info['records'])}]" if info else ""


def cell(bench, tag, fn):
    info = info_of(bench, tag)
    if not info:
        return "not run" if tag == "paper" else "—"
    try:
        v = fn(info, tag)
    except (KeyError, IndexError, ValueError, TypeError):
        return "—"
    return v + (hw_note(bench) if tag == "paper" else "")


def pct(v):
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:.1f} %"


def best_pair(info, tag):
    return f"{fmt_sig(info['sgn'][1])} {info['sgn'][0]} / {fmt_sig(info['sgd'][1])} {info['sgd'][0]}"


def fmt_sig(v):
    return "—" if v is None or not np.isfinite(v) else f"{plotting.round_sig(v, 2):g}"


def after(bench, which, labs):
    def fn(info, tag):
        T = read_out_times(info["df"], bench, tag)[which]
        read = read_reference_rule(info["df"], T, "test_accuracy")
        return " / ".join(f"{pct(read[l][0]) if l in read else '—'} {l}" for l in labs) + f" (T = {T:g} s)"
    return fn


def after_scaled(bench, which, labs):
    def fn(info, tag):
        if tag != "paper" or bench not in REF_FRAMES:
            return "—"
        T = PAPER_READ_OUT[bench][which] * our_sgd_epoch_time(info["df"]) / reference_sgd_epoch_time(bench)
        read = read_reference_rule(info["df"], T, "test_accuracy")
        return " / ".join(f"{pct(read[l][0]) if l in read else '—'} {l}" for l in labs) + f" (T = {T:.3g} s)"
    return fn


def at_epoch(lab, E):
    return lambda info, tag: pct(float(info["epochs"][lab].get(float(E), np.nan))) if lab in info["epochs"] else "—"


CLAIM_OF = {"boston_sgn_wins": ("boston", "best SGN below"), "boston_sgd1_diverges": ("boston", "SGD(1) div"),
            "sine_10_sgn_wins": ("sine_10", "best SGN below"), "sine_10_floor": ("sine_10", "SGN(10) below"),
            "sine_100_sgn_wins": ("sine_100", "best SGN below"), "mnist_epoch1": ("mnist", "after epoch 1")}


def v_of(key):
    """Status per scale of the §11 claim behind a row (time read-outs: see §11, one claim per T)."""
    if key not in CLAIM_OF:
        return "see §11"
    bench, text = CLAIM_OF[key]
    return "; ".join(v.status + v.claim[len(bench):v.claim.index(":")] for v in CLAIMS
                     if v.claim.startswith(bench + " (") and text in v.claim) or "—"


rows = []


def row(item, reference, fn_bench, fn, key):
    rows.append({"item": item, "reference": reference, "ours, paper scale": cell(fn_bench, "paper", fn),
                 "ours, ci scale": cell(fn_bench, "ci", fn) if SCALE == "ci" else "—",
                 "verdict": v_of(key) if key else "—"})


row("Boston: best test MSE, SGN / SGD", "0.0101 SGN(20) / 0.0267 SGD(0.01)", "boston", best_pair, "boston_sgn_wins")
row("Boston: SGD(1) diverges", "yes", "boston", lambda i, t: str("SGD(1)" in i["diverged"]), "boston_sgd1_diverges")
row("sine f=10: best test MSE, SGN / SGD", "1.04e-4 / 0.26 SGD(0.1)", "sine_10", best_pair, "sine_10_sgn_wins")
row("sine f=10: SGN(10) test MSE at the end", "1.3e-4", "sine_10", lambda i, t: fmt_sig(i["final"]["SGN(10)"]), "sine_10_floor")
row("sine f=100: best test MSE, SGN / SGD", "0.365 SGN(30) / 0.50", "sine_100", best_pair, "sine_100_sgn_wins")
row("MNIST @ 25 s: SGN(3) / SGD(1) / SGD(0.1)", "92.9 % / 89.8 % / 71.9 %", "mnist",
    after("mnist", 0, ["SGN(3)", "SGD(1)", "SGD(0.1)"]), "mnist_T0")
row("MNIST @ 100 s: SGN(3) / SGD(1)", "94.0 % / 93.0 %", "mnist", after("mnist", 1, ["SGN(3)", "SGD(1)"]), "mnist_T1")
row("MNIST @ 25 s scaled to the reference's SGD epochs: SGN(3) / SGD(1) / SGD(0.1)", "92.9 % / 89.8 % / 71.9 %",
    "mnist", after_scaled("mnist", 0, ["SGN(3)", "SGD(1)", "SGD(0.1)"]), "mnist_T0_scaled")
row("MNIST @ 100 s scaled: SGN(3) / SGD(1)", "94.0 % / 93.0 %", "mnist", after_scaled("mnist", 1, ["SGN(3)", "SGD(1)"]),
    "mnist_T1_scaled")
row("MNIST: SGN(3) after epoch 1", "86.6 %", "mnist", at_epoch("SGN(3)", 1), "mnist_epoch1")
row("MNIST: SGN(3) after 100 epochs", "94.1 %", "mnist", at_epoch("SGN(3)", 100), None)
row("MNIST: SGD(1) after 100 / 600 epochs", "92.5 % / 93.9 %", "mnist",
    lambda i, t: f"{at_epoch('SGD(1)', 100)(i, t)} / {at_epoch('SGD(1)', 600)(i, t)}", None)
row("MNIST: SGN(10) after epoch 1 / 100", "90.3 % / 93.0 %", "mnist",
    lambda i, t: f"{at_epoch('SGN(10)', 1)(i, t)} / {at_epoch('SGN(10)', 100)(i, t)}", None)
row("Fashion @ 50 s: SGD(0.1) / SGN(5) / SGN(3)", "86.7 % / 85.6 % / 85.2 %", "fashion",
    after("fashion", 0, ["SGD(0.1)", "SGN(5)", "SGN(3)"]), "fashion_T0")
row("Fashion @ 150 s: SGD(0.1) / SGN(5) / SGN(3)", "88.5 % / 87.8 % / 87.2 %", "fashion",
    after("fashion", 1, ["SGD(0.1)", "SGN(5)", "SGN(3)"]), "fashion_T1")
row("Fashion: SGN(10) after 10 epochs", "88.8 %", "fashion", at_epoch("SGN(10)", 10), None)
row(f"CIFAR-10 @ 650 s: SGN(10) / SGN(3) / SGD(0.1){'' if CIFAR_DATA == 'cifar10' else ' (ci: stand-in)'}",
    "64.7 % / 49.3 % / 63.1 %", "cifar10", after("cifar10", 0, ["SGN(10)", "SGN(3)", "SGD(0.1)"]), "cifar10_T0")
row("CIFAR-10: SGN(10) after 10 epochs", "70.9 %", "cifar10", at_epoch("SGN(10)", 10), None)


def trace_text(info_tag):
    return rep.trace_text(SUMMARY, info_tag)

rows.append({"item": "ρ → ρ_min, α ≈ 1 on classification, line search active on regression",
             "reference": "floor 1e-6; mean α 0.99–1.0; Boston SGN(10) backtracked 43 %",
             "ours, paper scale": trace_text("paper"), "ours, ci scale": trace_text("ci") if SCALE == "ci" else "—",
             "verdict": "see section 10"})
scorecard = pd.DataFrame(rows)
print(plotting.save_table(scorecard, PAPER, "reference_comparison"))
for bench in ALL:
    info = info_of(bench, "paper")
    print(f"paper-scale records, {bench}: " + (describe(info["records"], "paper") if info else "none"))
