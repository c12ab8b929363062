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
# This notebook derives the method and checks each identity numerically, explains the implementation
# (`curvlab.SGN`), then re-runs every benchmark with the reference's architectures, initialisations and
# preprocessing (`curvlab.repro.sgn`; summaries, claims and findings in `curvlab.repro.sgn_results`),
# overlays the reference's own per-epoch logs, and recomputes its table from them. Other notebooks:
# [00 · datasets](00_datasets.ipynb), [01 · ISAAC](01_isaac.ipynb).
#
# **Scales.** At `SCALE = "ci"` every benchmark runs reduced (subsets, epoch budgets, fewer grid points,
# seeds 1–3, one seed for the two CNNs) on a 2-core CPU in minutes; `curvlab.repro.sgn.SETTINGS` lists
# every reduction. `SCALE = "paper"` runs the reference's settings (seeds 1–5). The paper-scale records
# under `results/paper/02_sgn/` are rendered too (figure ids ending in `_paper`, labelled with their
# hardware). The CIFAR-10 CNN runs on the labelled stand-in `fashion_mnist_32` (Fashion-MNIST padded to
# 3×32×32 — its accuracies are *not* comparable with CIFAR-10's).

# %% tags=["parameters"]
SCALE = "ci"          # "ci" (2-core CPU, minutes) or "paper" (the reference's settings)
SEED = 0              # ci runs use seeds SEED + 1, 2, 3 (the two CNN benchmarks SEED + 1); paper: 1-5
DEVICE = "auto"       # kept for papermill calls; runs use experiment.run's "auto" (CUDA when present)
BENCHMARKS = "all"    # or a list, e.g. ["boston", "sine_10", "sine_100", "mnist", "fashion", "cifar10"]
SEEDS = None          # None: the scale's seeds; a list overrides them (e.g. fewer seeds on a CPU)

# %%
import math
import time

import numpy as np
import torch

from curvlab import curvature, data, krylov, models, plotting, verdicts
from curvlab._line_search import LineShortcut
from curvlab.repro import sgn as rs
from curvlab.repro import sgn_figures as sf
from curvlab.repro import sgn_reference
from curvlab.repro import sgn_report as rep
from curvlab.repro import sgn_results as RES
from curvlab.sgn import SGN, sgn_reference_init, trust_region_update

plotting.set_theme()
PAPER = "sgn"
SELECTED = RES.selected(BENCHMARKS)
CIFAR_DATA = rs.cifar_dataset(SCALE)
torch.set_num_threads(rs.THREADS)   # one intra-op thread (see curvlab.repro.sgn.THREADS): timings stay meaningful
SEED_LIST = RES.seed_list(SCALE, SEED, SEEDS)
print(f"scale {SCALE}; benchmarks run here: {', '.join(SELECTED)}; seeds {SEED_LIST}")
print(f"CIFAR-10 data: {CIFAR_DATA}" + (" (stand-in)" if CIFAR_DATA != "cifar10" else ""))
print("reference logs: reference/sgn (carried in the repository; source gmatilde/SGN)")

# %% [markdown]
# ## Results at a glance
#
# Every benchmark of §4–§9 runs here through `curvlab.sweep` (records under `results/<scale>/02_sgn/`,
# read back when on disk; benchmarks not selected are only read back), with the stored paper-scale
# records. Each claim of the reference is a function of the records (`curvlab.repro.sgn_verdicts`), with
# the seeds and their min–max spread: a gap within the spread is "inconclusive", a best SGD rate at the
# edge of its grid "inconclusive (lr at grid edge)"; read-outs after T use the measured clock (training
# only for ci records, training + evaluation for the legacy paper-scale ones). The list goes to
# `tables/sgn/scorecard.csv`, rendered into `papers.md` by `python -m curvlab.repro.papers`; §11 prints
# the findings behind it, §12 the reference-vs-ours table.

# %% tags=["nbval-ignore-output"]
OUT = RES.everything(SCALE, SEED_LIST, SELECTED)
SUMMARY, CLAIMS = OUT["summary"], OUT["claims"]
SCORECARD = verdicts.save_scorecard(CLAIMS, PAPER)      # tables/sgn/scorecard.csv, read by papers.md

# %% tags=["nbval-ignore-output"]
for v in CLAIMS:   # not compared by nbval: the read-outs after T seconds rest on this machine's clock
    print(v.sentence())

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
# * **`curvlab.krylov.conjugate_gradient(matvec, rhs, max_iter, tol, preconditioner, curvature)`** is
#   textbook preconditioned CG on flat vectors. Its step length $a_k = r_k^\top y_k / p_k^\top A p_k$
#   needs only the curvature along $p_k$; the full product $Ap_k$ is needed for the next residual. So
#   the last iteration the cap allows takes `curvature` instead, $p^\top G p = \|Jp\|^2_{H_L}$ from the
#   tangent pass alone, and skips that product's backward pass (the final residual is then not known).
#   SGN evaluates $\Delta^\top G\Delta = \|J\Delta\|^2_{H_L}$ from $J\Delta = \sum_k a_k Jp_k$, also
#   without an extra product. CG in SGN(k) thus costs k tangent passes and k − 1 backward passes
#   (besides the one forward and backward pass that give the loss and gradient).
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
# SGD is plain (no momentum, constant learning rate). Each run goes through `curvlab.sweep` (cached,
# seeded records) and `curvlab.training.fit`; the per-epoch training loss is the mean of the epoch's
# minibatch losses (the reference's `avg_loss`). **The clock counts the optimizer steps only**
# (evaluation is timed apart); the committed paper-scale records predate this and count steps *plus*
# evaluations, the reference's way (marked legacy). The curvature product is traced once before the
# clock starts (the analogue of Theano's compilation). The loop's batching overhead is not counted; for
# the sub-millisecond steps of Boston and sine it is a sizeable share of the wall time (printed below),
# which favours SGD's many cheap steps when budgets are in seconds. Per-step ρ and α are recorded (at
# most 2 000 steps per run). Plots place each epoch at the seeds' mean *measured* clock; the
# reference's logs only allow e × (mean time per epoch), its notebook's rule.

# %%
print("SGN settings in every SGN record's key, e.g. SGN(3):", rs.sgn_settings(3))

# %% [markdown]
# Read-out rules for "after T seconds". **Reference rule** (its notebook): the mean time per epoch over
# seeds, $\bar t$, gives the epoch index $e = \lfloor T/\bar t\rfloor$, and the cell is the seed-mean
# test value after epoch e (so a constant time per epoch is assumed). **True wall-clock**: per seed, the
# last evaluation whose clock is ≤ T, then the seed mean. A run that finished its epoch budget before T
# is read at its end (column "ended before T"); a diverged run that stopped before T shows "–".
#
# **The reference's logs: recomputing its table.** The README's table of test accuracy after T seconds
# (`sgn_reference.README_TABLE`) is recomputed from the reference's per-epoch logs with its rule; a cell
# matches within 0.1 point of the printed number. This validates the rule the tables below apply to ours.

# %%
print(plotting.save_table(OUT["readme_check"], PAPER, "reference_table_recomputed", float_format="%.1f"))
print("\n" + sgn_reference.readme_check_text(OUT["readme_check"]))

# %% [markdown]
# ## 4. Boston housing
#
# **Reference** (10 s per run on a laptop CPU, 5 seeds): SGN(1–20) reach test MSE ≈ 0.010–0.011
# (normalised targets); the best SGD (lr 0.01) 0.0267 after 10 s; SGD lr 0.1 blows up to 1e6 for about
# 10 epochs before recovering; SGD lr 1 diverges (NaN; omitted from the reference's plots, marked here).
# **Here (ci):** full data and grids, 40 epochs per run instead of 10 s.

# %%
rep.regression_section("boston", "Boston housing (real), MLP 13-100-100-1, batch 101", SUMMARY["boston"], SCALE)
print("\n".join(rep.blow_ups_text(SUMMARY["boston"])))

# %% [markdown]
# ## 5. Sine regression, frequency 10
#
# **Reference** (100 s per run, laptop CPU): SGN(20/30/40) below 2e-4 test MSE within 10 s and ≈ 1.04e-4
# (the noise floor is 1e-4) by 20–30 s; SGN(10) 1.3e-4 at 100 s; SGD stays near 0.45 (lr 0.1 best,
# 0.26 at the end); lr 1 diverges. **Here (ci):** full data, 25 epochs per run instead of 100 s, SGN
# grid {2, 3, 10, 20, 30}. Our data are drawn by the same generator with our own seed (the reference's
# data file is a different draw).

# %%
rep.regression_section("sine_10", "Sine f = 10 (generated), MLP 1-20-20-20-1, batch 1000", SUMMARY["sine_10"], SCALE)

# %% [markdown]
# ## 6. Sine regression, frequency 100
#
# **Reference:** SGD ≈ 0.50 for every learning rate (the "predict the mean" level, Var(sin) = 0.5); SGN
# improves with k up to 20–30: SGN(30) 0.365, SGN(20) 0.370, SGN(10) 0.41, SGN(2) 0.496 after 100 s.

# %%
rep.regression_section("sine_100", "Sine f = 100 (generated), MLP 1-20-20-20-1, batch 1000", SUMMARY["sine_100"], SCALE)

# %% tags=["nbval-ignore-output"]
# Timings (machine-dependent, not checked): epochs, s / epoch, share of the wall time the clock counts
for bench in ("boston", "sine_10", "sine_100"):
    t = rep.timing_summary(bench, SUMMARY[bench], sgn_reference.frame(bench))
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
rep.classification_section("mnist", "MNIST (real), MLP 784-20-20-20-10 sigmoid, batch 1000", SUMMARY["mnist"], SCALE)


# %% [markdown]
# Equal-epoch comparison (deterministic, so checked): test accuracy after the first epoch and at the
# end of the SGN budget. Then test accuracy after T seconds, by the reference's rule and by true
# wall-clock (machine-dependent, so not checked); the paper-scale table adds T scaled by the ratio of SGD
# epoch times (ours / reference's), which compares at the same number of SGD-epoch equivalents.

# %%
def equal_epochs(bench):
    for tag in [t for t in dict.fromkeys([SCALE, "paper"]) if t == SCALE or SUMMARY[bench].get(t)]:
        print(rep.equal_epochs(bench, SUMMARY[bench], tag))


def time_tables(bench):
    t = rep.time_table(bench, SUMMARY[bench], sgn_reference.frame(bench))
    print(f"{bench}: no records" if t is None else plotting.save_table(t, PAPER, f"after_T_{bench}", float_format="%.1f"))


equal_epochs("mnist")

# %% tags=["nbval-ignore-output"]
time_tables("mnist")

# %% [markdown]
# ## 8. Fashion-MNIST, LeNet (`sgn_arch_1`)
#
# **Reference** (GPU; SGD 100 epochs, SGN 10 epochs): SGD(0.1) leads at both read-outs (86.7 % at 50 s,
# 88.5 % at 150 s) against the best SGN (85.6 % SGN(5), 87.8 % SGN(5)); SGD(1) diverges at once; SGN(10)
# reaches 88.8 % after 10 epochs. **Here (ci):** a 2 000 / 1 000 image subset, batch 250 (not 1000),
# the full SGD grid for 20 epochs, SGN(3) only for 2 epochs (the LeNet's steps at batch 1000 are slow on
# this shared CPU), so most SGN iterations are the 10-CG warm-up (counted in §11). Read-outs at half and
# all of the SGN(3) run's clock. The full configuration is kept for `SCALE = "paper"` (it needs a GPU).

# %%
rep.classification_section("fashion", "Fashion-MNIST (real), LeNet (sgn_arch_1)", SUMMARY["fashion"], SCALE)
equal_epochs("fashion")

# %% tags=["nbval-ignore-output"]
time_tables("fashion")

# %% [markdown]
# ## 9. CIFAR-10, CNN (`sgn_arch_4`)
#
# **Reference** (GPU; SGD 100 epochs, "longer" SGD(0.1) 250 epochs, SGN 10 epochs): after 650 s SGN(10)
# 64.7 % beats SGD(0.1) 63.1 %; after 2000 s SGN(10) 71.0 % vs the longer SGD(0.1) 60.9 %. SGD(0.1) sits
# at loss 2.30 for 3 epochs; SGD(1e-3) learns nothing. **Here (ci):** the stand-in `fashion_mnist_32`
# (Fashion-MNIST padded to 3×32×32 — its accuracies are *not* comparable with CIFAR-10's), 1 000 / 500
# images, batch 250, SGD {0.01, 0.1, 1} for 14 epochs, SGN(3) for 2 epochs (all its iterations in the
# 10-CG warm-up, so this is SGN(10)'s start as much as SGN(3)'s); read-outs as for Fashion-MNIST.

# %%
cifar_title = ("CIFAR-10 (real)" if CIFAR_DATA == "cifar10" else "CIFAR-10 stand-in fashion_mnist_32 (Fashion-MNIST, 3x32x32)") + ", CNN (sgn_arch_4)"
rep.classification_section("cifar10", cifar_title, SUMMARY["cifar10"], SCALE)
equal_epochs("cifar10")

# %% tags=["nbval-ignore-output"]
time_tables("cifar10")

# %% [markdown]
# ## 10. The ρ and α traces
#
# The trust region starts at ρ₀ = 1e-4, raises ρ while the quadratic model over-predicts the decrease,
# then lowers it to the floor ρ_min = 1e-6 (reference: peak 2.3e-4 to 2.9e-2, floor after about 20
# iterations on MNIST SGN(3)). The line search is rarely active on classification (mean α 0.99–1.0) but
# active on regression with many CG iterations (reference: Boston SGN(10) backtracks on 43 % of steps).
# Drawn for the paper-scale records; backtracked shares for both scales (ours: first seed; the
# reference's: seed mean over its full logs).

# %%
steps_paper, trace_stats = rep.traces(SUMMARY, "paper")
if len(steps_paper):
    names = {"cifar10": "cifar10" if CIFAR_DATA == "cifar10" else "cifar10 stand-in (fashion_mnist_32)"}
    sf.draw_rho_alpha(steps_paper, "Median damping and share of backtracked steps per window (paper scale, first seed)", names, "rho_alpha_paper")
    print(plotting.save_table(trace_stats, PAPER, "rho_alpha_paper", float_format="%.3g"))
for tag in dict.fromkeys([SCALE, "paper"]):
    for bench in ("mnist", "boston"):
        print(rep.backtracking_text(SUMMARY, tag, bench))
print("\n".join(OUT["trace_findings"]))

# %% [markdown]
# **Reading the traces.** The reference's pattern holds: ρ rises during the first iterations and falls
# to the floor in most runs; on MNIST the line search is rarely active. One difference is in size, not
# kind: the Boston SGN(10) paper-scale run backtracks on a smaller share of its steps than the
# reference's. Our 10-second runs take many more iterations, and backtracking concentrates early: the ci
# run, with an iteration count comparable to the reference's, backtracks on a share close to it (all
# printed above). Our default Armijo rule is also the textbook one (the reference compares every trial with α₀'s
# right-hand side, which backtracks more; `line_search_rule="reference"` reproduces it), and our Boston
# 404/102 split is a different random one.
#
# ## 11. What the runs show
#
# The findings below are generated from the records (`curvlab.repro.sgn_results.findings`); the
# verdicts they cite are those at the top. The first cell holds only numbers that do not depend on this
# run's clock (equal-epoch values of the ci runs, and the paper-scale records, whose clocks are stored);
# the second the ci read-outs after T seconds, which do.

# %%
for line in OUT["findings"]:
    print("•", line)

# %% tags=["nbval-ignore-output"]
for line in OUT["timed_findings"]:
    print("•", line)

# %% [markdown]
# Reading them:
#
# * *Regression.* The best SGN(k) ends below the best SGD on all three problems at both scales, and
#   SGD(1) diverges. At paper scale our absolute losses are lower than the reference's logs for *both*
#   methods: this CPU fits many more epochs into the same seconds than the reference's 2017 laptop with
#   Theano; the ordering and, on Boston, the factor between the methods carry over. SGD(0.1) blows up in
#   some Boston seeds (printed under its figures), which dominates its seed mean. On sine f = 10 SGD(0.1)
#   and SGD(0.01) also fit the sine at paper scale, unlike the reference, so SGN's lead is a small
#   factor, not orders of magnitude. On sine f = 100 every SGD rate stays at the "predict the mean"
#   level while SGN improves with k; the optimum in k is flat (the next best k is within the spread).
# * *MNIST.* Our SGD curves lie on the reference's logs, and the SGN checkpoints after 1 / 10 / 100
#   epochs are close to the reference's (§12). At the reference's 25 s and 100 s in SGD-epoch equivalents
#   its table is reproduced closely; on our own clock SGN(3) is ahead of the best SGD in the seed mean at
#   both read-outs, but within the spread over seeds: inconclusive.
# * *Fashion-MNIST (ci proxy).* Which of SGD(0.1) and SGN(3) leads at the two scaled-down read-outs
#   follows the timing, so the reference's unadvertised ordering (SGD(0.1) ahead) is neither confirmed
#   nor refuted; with most SGN iterations in the warm-up this is a weak check (a GPU run is needed).
# * *CIFAR-10 (ci: stand-in only).* After the same 2 epochs SGN(3) is far ahead of every SGD rate; its
#   first epoch (all warm-up, 10 CG products per iteration) costs several SGD epochs, so the read-outs
#   after T seconds depend on this run's clock. Nothing here says how it does on CIFAR-10 itself.
#
# ### Run at paper scale
#
# `make reproduce SCALE=paper` (or `papermill -p SCALE paper notebooks/02_sgn.ipynb out.ipynb`) runs the
# reference's settings; `CURVLAB_WORKERS=N` spreads the runs over N single-thread Dask workers, and
# records already on disk are skipped, so an interrupted run resumes. The estimate below is computed
# from this notebook's measured ci timings (one thread per run).

# %% tags=["nbval-ignore-output"]
cost = rs.paper_cost({b: SUMMARY[b]["ci"]["records"] for b in RES.ALL if SUMMARY[b].get("ci")})
print(plotting.to_markdown(cost, "%.3g"))
print(f"total ≈ {cost['cpu_hours'].sum():.0f} single-thread CPU hours ({cost['runs'].sum()} runs); "
      "Fashion and CIFAR-10 at full size want a GPU")

# %% [markdown]
# ## 12. Reference vs ours
#
# Reference number | ours at paper scale (with seeds) | ours at ci scale | verdict. The reference's times
# were measured on its hardware (a laptop CPU for the regressions, a GTX TITAN X for the classifiers),
# ours on a shared 2-core CPU, so a read-out at T seconds compares different amounts of work: the
# orderings, not the seconds, are comparable. The "@ T s" rows read our runs by the reference's rule
# (the epoch ⌊T / t̄⌋ at the mean time per epoch t̄), so that both columns follow one rule; §11's timed
# findings read the measured clock instead. The two differ where the first epoch is slower than the
# rest (SGN's CG warm-up): at a T inside it, the measured clock still sees the initial accuracy.
# Not checked by nbval (it holds time read-outs).

# %% tags=["nbval-ignore-output"]
print(plotting.save_table(OUT["comparison"], PAPER, "reference_comparison"))
for bench in RES.ALL:
    info = SUMMARY[bench].get("paper")
    print(f"paper-scale records, {bench}: " + (rep.describe(info["records"], "paper") if info else "none"))
