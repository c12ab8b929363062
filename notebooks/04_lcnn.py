# %% [markdown]
# # 04 · LCNN: low-curvature networks by construction
#
# S. Srinivas, K. Matoba, H. Lakkaraju, F. Fleuret. *Efficient Training of Low-Curvature Neural
# Networks* (NeurIPS 2022, arXiv 2206.07144). Reference code `kylematoba/lcnn`.
#
# **The claim.** The curvature of a network's loss with respect to its *input* — measured scale-free
# as the normalised curvature C(x) = ‖∇²ₓℓ‖ / (‖∇ₓℓ‖ + ε) — is bounded by the curvatures and slopes
# (Lipschitz constants) of its layers. Linear and convolutional layers have no curvature; what remains
# is controllable layer by layer: a *centred softplus* whose curvature is one learnable β, a batch norm
# whose Lipschitz constant is capped at a learnable γ, and spectral normalisation of every
# convolution on its true operator. Penalising Σβ and Σ|log γ| (optionally with an input-gradient-norm
# penalty) gives networks with "drastically lower curvature" at "similar predictive performance", for
# "only a marginally increased training time" and "a fraction of the cost of adversarial training",
# with "more stable gradients" and more off-the-shelf adversarial robustness.
#
# Other notebooks: [00 · datasets](00_datasets.ipynb), [01 · ISAAC](01_isaac.ipynb),
# [02 · SGN](02_sgn.ipynb), [03 · GroupedNewton](03_grouped_newton.ipynb); every paper's claims side by
# side in [papers.md](../papers.md). The paper's table values are in its PDF only and are not quoted
# here: each verdict tests the claim's direction with our records, and says so.
#
# **Scales.** `SCALE = "ci"` runs every experiment reduced (two moons; a reduced-width ResNet-18 on
# the labelled 20-class stand-in for CIFAR-100, `mnist_fashion_20`, training subsets, a few epochs,
# 3 seeds) on a 2-core CPU in minutes; `SCALE = "paper"` has the reference's settings (ResNet-18,
# 200 epochs, batch 128, SGD 0.1 with momentum, the paper's regularisers), which need a GPU.

# %% tags=["parameters"]
SCALE = "ci"      # "ci" (2-core CPU, minutes) or "paper" (the reference's settings)
SEED = 0          # ci runs use seeds SEED + 1, 2, 3

# %%
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from curvlab import data, experiment, plotting, verdicts
from curvlab.lcnn import models as M
from curvlab.lcnn.activations import centered_softplus
from curvlab.lcnn.batchnorm import LipschitzBatchNorm2d
from curvlab.lcnn.bound import chain_bound, layer_terms
from curvlab.lcnn.measurement import measure_curvature
from curvlab.lcnn.regularizers import gradient_norm_penalty, reference_strength, regularized_loss
from curvlab.lcnn.spectral import conv_operator_matrix, conv_spectral_norm, operator_norm, spectral_estimate
from curvlab.repro import lcnn as R
from curvlab.repro import lcnn_results as RES
from curvlab.repro._cost import multiply_adds
from curvlab.repro.sgn_figures import untimed

plotting.set_theme()
experiment.set_threads()
PAPER = "lcnn"

# %% [markdown]
# ## Results at a glance
#
# Every experiment below runs here through `curvlab.sweep` (records under `results/<scale>/04_lcnn/`;
# a record on disk is read back). Each claim's verdict is a function of the records
# (`curvlab.repro.lcnn_verdicts`): two variants are ordered only when their min–max ranges over seeds
# are disjoint, and every number that comes from the stand-in dataset says so.

# %% tags=["nbval-ignore-output"]
OUT = RES.everything(SCALE, SEED)
plt.close("all")                                  # each figure is shown in its own section below
VERDICTS = OUT["verdicts"]
verdicts.save_scorecard(VERDICTS, PAPER)          # tables/lcnn/scorecard.csv, read by papers.md
for v in VERDICTS:
    print(f"{v.status:32s} {v.claim}")

# %% [markdown]
# ## 1. Derivation
#
# ### 1.1 Normalised curvature
#
# For a sample (x, y) the code's object is the per-sample cross-entropy ℓ(x) = −log softmax(f(x))_y
# as a function of the input image (pixels in [0, 1]), with the network in eval mode. Its normalised
# curvature is
#
# $$C(x) = \frac{\|\nabla^2_x \ell(x)\|_2}{\|\nabla_x \ell(x)\|_2 + \varepsilon}, \qquad \varepsilon = 10^{-6}.$$
#
# The Hessian norm alone mixes "how curved" with "how steep": multiplying ℓ by c multiplies
# ‖∇²ℓ‖ and ‖∇ℓ‖ by c, and leaves C unchanged (for ε → 0). C is the inverse of the length scale over
# which the gradient turns: a first-order (linear) explanation or attack is trustworthy over
# distances well below 1/C.
#
# `measure_curvature` estimates ‖∇²ℓ‖ by a per-sample power iteration on the core's input-Hessian
# products (`curvlab.hessian.input_hessian_vector_product`: one forward-over-reverse product serves
# the whole batch, as samples do not interact in eval mode). The check, on a tiny CNN in float64:
# where the power method reports convergence its |λ̂| equals the largest |eigenvalue| of the dense
# input Hessian (`torch.func.hessian`, `eigvalsh`); where it does not, the top of the spectrum is a
# ±μ pair, on which a power iteration cannot settle — the flag says so instead of returning a
# silently wrong number. Then C of 10·ℓ equals C of ℓ while ‖∇²ℓ‖ grows tenfold.

# %%
torch.manual_seed(0)
tiny = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Softplus(beta=2.0), torch.nn.Flatten(),
                           torch.nn.Linear(3 * 36, 4)).double()
xt, yt = torch.rand(6, 2, 6, 6, dtype=torch.float64), torch.randint(0, 4, (6,))
dim = xt[0].numel()


def dense(c=1.0):
    """Per-sample (largest |eigenvalue|, gradient norm) of c·ℓ_i from the dense input Hessian."""
    def loss(z, label):
        return c * torch.nn.functional.cross_entropy(tiny(z[None]), label[None])
    with torch.no_grad():
        H = torch.stack([torch.func.hessian(loss)(z, label).reshape(dim, dim) for z, label in zip(xt, yt)])
        g = torch.stack([torch.func.grad(loss)(z, label).reshape(dim) for z, label in zip(xt, yt)])
    return torch.linalg.eigvalsh(H), g.norm(dim=1)


eig, gnorm = dense()
top = eig.abs().amax(1)
res = measure_curvature(tiny, xt, yt, iters=200, eps=0.0, tol=1e-10)
ok = res.converged
print(f"power method converged on {int(ok.sum())} of {len(ok)} samples; there |λ̂| = max|eig(∇²ℓ)| "
      f"(rel. error < 1e-8): {bool(((res.hessian_norm - top).abs() / top)[ok].max() < 1e-8)}")
for i in torch.nonzero(~ok).flatten().tolist():
    print(f"  sample {i} (not converged): spectrum from {float(eig[i, 0]):.3f} to {float(eig[i, -1]):.3f}, "
          "a ±μ pair")
print("gradient norms equal the dense ones (< 1e-12):", bool((res.gradient_norm - gnorm).abs().max() < 1e-12))
eig10, gnorm10 = dense(10.0)
ratio = eig10.abs().amax(1) / top
print("ℓ -> 10ℓ: ‖∇²ℓ‖ ×", f"{float(ratio.mean()):.3g};",
      "C unchanged (rel. < 1e-12):",
      bool(((eig10.abs().amax(1) / gnorm10) / (top / gnorm) - 1).abs().max() < 1e-12))

# %% [markdown]
# ### 1.2 The data-free upper bound
#
# Write the network as a composition f = h_n ∘ … ∘ h_1 of layers with Lipschitz constants L_i
# (sup ‖∇h_i‖) and curvatures κ_i (sup ‖∇²h_i‖, as a bilinear map). The chain rule
# ∇²(g∘h) = ∇g·∇²h + ∇²g[∇h, ∇h] gives ‖∇²(g∘h)‖ ≤ L_g κ_h + κ_g L_h², and by induction
#
# $$\|\nabla^2 f\| \;\le\; \sum_{i=1}^{n} \kappa_i \Big(\prod_{j<i} L_j\Big)^2 \prod_{j>i} L_j .$$
#
# This is the shape of the paper's bound as the specification states it (§1.2: a sum over nonlinear
# layers of the layer's curvature times the product of the slopes before it); **the exact theorem form
# (the paper's §3, stated there for the normalised curvatures of the layers) is to be checked in the
# PDF**, and is not claimed here. What the form shows is enough: linear and convolutional layers have
# κ = 0; with spectral normalisation their L = 1; the activations contribute κ_i, and the batch norms
# only their L_j. For an LCNN every term is a learnable scalar: κ_i = β_i/4 (1.3) and L_j ≤ γ_j (1.4),
# so the bound is *data-free*, Σ_i (β_i/4) Π_{j<i} γ_j² Π_{j>i} γ_j over the batch norms j, and the
# penalties λ_β Σβ + λ_γ Σ|log γ| pull it down.
#
# The check, on the two-moons MLP pair (2 → 16 → 16 → 2, the first logit as f, float64, batch-norm
# statistics from 20 training-mode batches): the largest ‖∇²f‖ over 512 two-moons points, each from
# the dense 2×2 Hessian, against the bound computed from the layers (exact operator norms by SVD,
# BN Lipschitz constants from the running variance). The standard network's Softplus(β = 1000)
# has κ = 250 and its batch norms L = 1/σ_min; the LCNN's terms are β/4 and min(1/σ_min, γ). Setting
# every γ = 1 and β = 1 (where the penalties push) leaves the data-free bound Σβ_i/4 = 0.5.

# %%
moons_x = torch.as_tensor(data.make_two_moons(512, seed=0)[0], dtype=torch.float64)


def largest_hessian(net):
    net.eval()
    with torch.no_grad():
        H = torch.vmap(torch.func.hessian(lambda z: net(z[None])[0, 0]))(moons_x)
    return float(torch.linalg.matrix_norm(H, ord=2).max())


nets = {}
for variant in ("standard", "lcnn"):
    torch.manual_seed(0)
    net = M.moons_mlp(variant, hidden=(16, 16)).double().train()
    with torch.no_grad():
        for _ in range(20):
            net(moons_x[torch.randperm(512)[:128]])
    nets[variant] = net
    measured, bound = largest_hessian(net), chain_bound(layer_terms(net))
    print(f"{variant:8s}: max ‖∇²f‖ = {measured:.3g} <= bound {bound:.3g}: {measured <= bound}")
lc = nets["lcnn"]
gammas = [float(m.gamma.detach()) for m in M.lipschitz_bn_modules(lc)]
betas = [float(m.beta.detach()) for m in M.beta_modules(lc)]
free = sum(b / 4 * math.prod(gammas[:i]) ** 2 * math.prod(gammas[i:]) for i, b in enumerate(betas))
print(f"lcnn data-free bound from β = {[round(b, 3) for b in betas]}, γ = {[round(g, 3) for g in gammas]}: "
      f"{free:.3g} (>= the bound above: "
      f"{free >= chain_bound(layer_terms(lc)) * (1 - 1e-6)})")
with torch.no_grad():
    for m in M.lipschitz_bn_modules(lc):
        m.log_gamma.fill_(0.0)
    for m in M.beta_modules(lc):
        m.log_beta.fill_(math.log(1.0 - 1e-3))
measured, bound = largest_hessian(lc), chain_bound(layer_terms(lc))
print(f"lcnn with every γ = 1, β = 1: max ‖∇²f‖ = {measured:.2g} <= bound {bound:.2g}: {measured <= bound}; "
      f"the bound is Σβ/4 = 0.5 up to the spectral estimates (within 1 %): {abs(bound - 0.5) < 5e-3}")

# %% [markdown]
# ### 1.3 Centred softplus: one scalar curvature, fixed at the origin
#
# $$s_\beta(x) = \frac{\log(1 + e^{\beta x}) - \log 2}{\beta},\qquad s' = \sigma(\beta x) \in (0, 1),
# \qquad s'' = \beta\,\sigma(1-\sigma) \le \beta/4,\qquad \frac{s''}{s'} = \beta\,(1 - \sigma(\beta x)) \le \beta.$$
#
# So s is 1-Lipschitz for every β, its curvature is at most β/4 (at 0) and its normalised curvature
# at most β: β *is* the layer's curvature, and a penalty on β is a penalty on the bound's κ_i. The
# −log 2 pins s(0) = 0; as β → ∞, s → ReLU (gap ≤ log 2/β); as β → 0, s → x/2, a linear map. Plain
# softplus log(1 + e^{βx})/β instead drifts upward by log 2/β at the origin — lowering its β to
# lower the curvature moves every activation (the paper's Fig. 1c, drawn in §4). Checked with
# autograd's exact derivatives on a grid, in float64:

# %%
z = torch.linspace(-6, 6, 2001, dtype=torch.float64, requires_grad=True)
for beta in (0.5, 5.0, 50.0):
    d1, = torch.autograd.grad(centered_softplus(z, beta).sum(), z, create_graph=True)
    d2, = torch.autograd.grad(d1.sum(), z)
    d1 = d1.detach()
    s0 = float(centered_softplus(torch.zeros(1, dtype=torch.float64), beta))
    print(f"β = {beta:4}: s(0) = {s0:.1g}; 0 < s' <= 1: {bool(d1.min() > 0 and d1.max() <= 1)}; "
          f"max s''/s' = {float((d2 / d1).max()):.4g} <= β; max s'' / (β/4) = {float(d2.max()) / (beta / 4):.4f}")
grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
print(f"β = 1e4: max |s - ReLU| = {float((centered_softplus(grid, 1e4) - grid.clamp_min(0)).abs().max()):.2g}"
      f" (log 2/β = {math.log(2) / 1e4:.2g}); β = 1e-4: max |s - x/2| on [-3, 3] = "
      f"{float((centered_softplus(grid, 1e-4) - grid / 2).abs().max()):.2g}")
for beta in (1.0, 0.1, 0.01):
    plain = float(torch.nn.functional.softplus(torch.zeros(1, dtype=torch.float64), beta=beta))
    print(f"β = {beta:5}: plain softplus(0) = {plain:.4g} = log 2/β; centred: "
          f"{float(centered_softplus(torch.zeros(1, dtype=torch.float64), beta)):.1g}")

# %% [markdown]
# ### 1.4 Batch norm with its Lipschitz constant capped at γ
#
# An affine-free batch norm in eval mode maps channel c to (x_c − μ_c)/σ_c: a diagonal map with
# Lipschitz constant 1/σ_min, unbounded when one channel has little variance. The clipped layer
# multiplies the whole output by min(1, γσ_min) (σ_min from the running variance), so its gains are
# min(1/σ_c, γσ_min/σ_c) and its Lipschitz constant is
#
# $$L_{BN} = \min(1/\sigma_{\min},\ \gamma) \le \gamma .$$
#
# It has no curvature (it is affine in eval mode), so in the bound it contributes only L ≤ γ, a
# learnable scalar pulled towards 1 by Σ|log γ|. The reference's layer, followed here, has no
# per-channel scale or shift (affine-free); γ is its only parameter. The check: a layer whose second
# channel has a standard deviation of 0.05, so 1/σ_min ≈ 20 ≫ γ = 4; the top singular value of its
# dense eval-mode Jacobian equals `lipschitz()` = γ, while a plain affine-free batch norm on the same
# statistics has 1/σ_min.

# %%
torch.manual_seed(0)
bn = LipschitzBatchNorm2d(3, gamma_init=4.0).double()
channel_scale = torch.tensor([1.0, 0.05, 2.0], dtype=torch.float64)[None, :, None, None]
with torch.no_grad():
    for _ in range(200):                                    # running variance converged (momentum 0.1)
        bn(torch.randn(64, 3, 4, 4, dtype=torch.float64) * channel_scale)
bn.eval()
jac = torch.func.jacrev(lambda v: bn(v.reshape(1, 3, 4, 4)).reshape(-1))(torch.zeros(48, dtype=torch.float64))
top_sv = float(torch.linalg.matrix_norm(jac.detach(), ord=2))
print(f"clipped BN: top singular value of the Jacobian {top_sv:.4g} = lipschitz() {float(bn.lipschitz().detach()):.4g}"
      f" = γ {float(bn.gamma.detach()):.4g}; the plain BN's 1/σ_min = {float(1 / bn.sigma_min()):.3g}")

# %% [markdown]
# ### 1.5 Spectral normalisation on the true convolution operator
#
# A convolution with kernel W on C_in × H × W inputs is a linear map A_W whose Lipschitz constant is
# its largest singular value σ(A_W) — not the norm of the kernel reshaped to a C_out × (C_in k²)
# matrix, which is what `torch.nn.utils.spectral_norm` divides by. The LCNN layer divides W by
# σ̂ = ⟨u, A_W v⟩ from a power iteration on A_Wᵀ A_W, with A_W = `conv2d` and A_Wᵀ = `conv_transpose2d`
# at the layer's input size: 15 iterations at registration, then one per training forward (none in
# eval). Each iteration costs one convolution and one transposed convolution of a *single* image,
# against a dense SVD of the (C_out H W) × (C_in H W) matrix — 768 × 512 here, and 10⁶ × 10⁶ for a
# 512-channel layer on 32 × 32 inputs. The check, on an 8 × 8 input in float64: σ̂ against the SVD of
# the dense operator (`conv_operator_matrix`) as the iterations accumulate, the normalised operator's
# exact norm tending to 1, and the reshaped-kernel norm, which is a different number.

# %%
torch.manual_seed(0)
conv = torch.nn.Conv2d(8, 12, 3, padding=1, bias=False).double()
exact = float(torch.linalg.matrix_norm(conv_operator_matrix(conv, 8), ord=2))
reshaped = float(torch.linalg.matrix_norm(conv.weight.detach().reshape(12, -1), ord=2))
print(f"σ(A_W) by SVD of the dense {12 * 64}×{8 * 64} operator: {exact:.4g}; reshaped-kernel norm {reshaped:.4g}")
sn = torch.nn.Conv2d(8, 12, 3, padding=1, bias=False).double()
sn.load_state_dict(conv.state_dict())
conv_spectral_norm(sn, 8)                                   # 15 warm-up iterations
sn.train()
done = 15
for target in (15, 20, 40, 100):
    with torch.no_grad():
        for _ in range(target - done):
            sn(torch.zeros(1, 8, 8, 8, dtype=torch.float64))     # one power iteration per training forward
    done = target
    print(f"  after {done:3d} iterations: σ̂/σ = {spectral_estimate(sn) / exact:.4f}; "
          f"σ(A_{{W/σ̂}}) = {operator_norm(sn, 8):.4f}")
torch_sn = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Conv2d(8, 12, 3, padding=1, bias=False).double())
torch_sn.parametrizations.weight.original.data.copy_(conv.weight.data)
torch_sn.train()
with torch.no_grad():
    for _ in range(100):
        torch_sn(torch.zeros(1, 8, 8, 8, dtype=torch.float64))
print(f"torch's reshaped-kernel spectral_norm after 100 iterations: the operator's norm is "
      f"{operator_norm(torch_sn, 8):.3g}, not 1")

# %% [markdown]
# ## 2. The implementation, explained
#
# * **`curvlab.lcnn.activations`**: `centered_softplus(x, β)` (exact in both tails: no cancellation
#   near 0, no overflow at large βx) and `CenteredSoftplus` with β = exp(θ) + 10⁻³, θ learnable.
# * **`curvlab.lcnn.batchnorm`**: `LipschitzBatchNorm2d` / `1d`, affine-free, clip from the running
#   variance; `lipschitz()` is the eval-mode constant.
# * **`curvlab.lcnn.spectral`**: `conv_spectral_norm(conv, input_size)` registered eagerly (u and v
#   keep fixed shapes, so a state dict loads without a warm-up forward, unlike the reference's lazy
#   wrapper whose buffers change shape for strided convs) and `linear_spectral_norm`.
# * **`curvlab.lcnn.models`**: ResNet-18/34 (the 1/√2 half-channel residual block of the reference,
#   SN fc in every variant), VGG-11 and the two-moons MLP, each as `standard` (Softplus β = 1000),
#   `lcnn` and `softplus_wd` (Softplus β = 10) on one skeleton, with a width multiplier.
# * **`curvlab.lcnn.regularizers`**: the Σβ and Σ|log γ| penalties; the input-gradient-norm penalty
#   λ · mean_i ‖∇ₓℓ_i‖² by double backprop, whose strength does not depend on the batch size
#   (`reference_strength` maps the reference's constant: 10⁵ c / B²); the CURE-style penalty; their sum
#   in `regularized_loss`, which also works on a network with no softplus (the reference crashes there).
# * **`curvlab.lcnn.measurement`** (§1.1) and **`curvlab.lcnn.robustness`**: PGD-ℓ2 over a grid of
#   radii and the cosine similarity of input gradients under small input noise.
#
# Two checks: the gradient-norm penalty equals its closed form on a linear softmax model, where
# ∇ₓℓ_i = Wᵀ(p_i − e_{y_i}); and the curvature penalty on a network with no softplus is a number and
# backpropagates.

# %%
torch.manual_seed(0)
lin = torch.nn.Linear(5, 3).double()
xl, yl = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
penalty, _ = gradient_norm_penalty(lin, xl, yl, 0.7)
p = torch.softmax(lin(xl), 1)
closed = 0.7 * ((p - torch.nn.functional.one_hot(yl, 3)) @ lin.weight).pow(2).sum(1).mean()
print("gradient-norm penalty = λ mean_i ‖Wᵀ(p_i − e_yi)‖² (rel. < 1e-12):",
      bool(((penalty - closed).abs() / closed) < 1e-12))
print(f"reference constant 1e-3 at batch 128 -> strength {reference_strength(1e-3, 128):.2g}, at 64 -> "
      f"{reference_strength(1e-3, 64):.2g}")
plain = M.moons_mlp("standard", hidden=(8,)).double()
total, parts = regularized_loss(plain, moons_x[:32], torch.zeros(32, dtype=torch.long), reg_beta=1e-2, reg_gamma=1e-2)
total.backward()
print("curvature penalty on a network without softplus:", {k: round(float(v), 3) for k, v in parts.items()},
      "| backpropagates:", all(q.grad is not None for q in plain.parameters()))
s1 = R.settings(SCALE)
print(f"Table 1 at {SCALE} scale: {s1['model']}, input {s1['input']}, {s1['n_train']} / {s1['n_test']} images, "
      f"{s1['epochs']} epochs, batch {s1['batch']}, seeds {R.SETTINGS[SCALE]['seeds']}; objectives:")
for variant in R.TABLE1_VARIANTS:
    weights = {k: f"{w:.2g}" for k, w in R.objective(variant, s1).items() if w}
    print(f"  {R.LABELS[variant]:22s} cross-entropy + {weights or 'nothing'}")


# %% [markdown]
# ## 3. Figure 1a/b: two moons
#
# The paper's first figure: a standard network and an LCNN trained on two moons, with visibly
# different decision boundaries. Here the MLP pair 2 → 64 → 64 → 64 → 2 (standard: BN + Softplus
# β = 1000; LCNN: Lipschitz BN, centred softplus with the Σβ penalty, spectrally normalised linear
# layers) on `sklearn`'s two moons, with the normalised curvature measured on test points (the
# network sizes and training settings of the paper's figure are [PDF]).

# %%
def show(fig_id):
    entry = OUT["figures"][fig_id]
    display(entry["figure"])
    print(untimed(entry["summary"]))                 # the data's clock columns vary from run to run


TIMED = ("training-time overhead", "adversarial training's cost")     # verdicts quoting measured clocks


def checked(v):
    """The line nbval compares: the whole verdict, but only the status of one from the ResNet runs.

    CPUs of the same family pick different convolution kernels, whose last-bit differences a few
    epochs of training amplify into the printed digits; the ResNet verdicts' numbers are printed in
    full in the unchecked cells beside them. Figure 1 (exact computation, and MLPs) prints in full.
    """
    if v.claim.startswith("Fig.") or v.status == "needs GPU":
        return v.sentence()
    outcome = v.evidence.split(":")[0]              # a proxy verdict's evidence opens with its outcome
    return f"{v.claim} — {v.status}" + (f" ({outcome})" if outcome in verdicts.STATUSES else "")


def claim_lines(*keys, full=False):
    for v in VERDICTS:
        if any(k in v.claim for k in keys):
            print(v.sentence() if full else checked(v))


show("fig1ab_two_moons")
claim_lines("Fig. 1a/b")

# %% [markdown]
# ## 4. Figure 1c: softplus against centred softplus
#
# §1.3 in a picture: for large β both approach ReLU; for small β both tend to linear maps, but plain
# softplus drifts up by log 2/β while the centred one stays at the origin.

# %%
show("fig1c_softplus")
claim_lines("Fig. 1c")

# %% [markdown]
# ## 5. Table 1: seven training variants
#
# The paper's Table 1 is ResNet-18 on CIFAR-100 with seven variants: standard, LCNN, gradient-norm
# regularised (GradReg), LCNN + GradReg, CURE, softplus β = 10 + weight decay, and adversarial
# training (PGD-ℓ2, ε = 0.1, 3 steps of 0.01 — the reference's, weak). For each: test accuracy, and
# mean ± std of C, ‖∇²ℓ‖ and ‖∇ℓ‖ on test inputs by the power method (K = 10). CIFAR-100 cannot be
# installed offline, so at ci scale the rows come from a reduced ResNet-18 on the labelled 20-class
# stand-in `mnist_fashion_20` (MNIST ∪ Fashion-MNIST, pixels in [0, 1], no normalisation): its numbers
# say nothing about CIFAR-100 and are not comparable with the paper's. The paper's values are not in
# the specification; the table's paper column says so instead of quoting them. The checked cell
# prints each verdict's status; the table, the figure and the verdicts' numbers follow unchecked.

# %%
t1 = OUT["table1"]
print(f"{t1['model']}; data {t1['label']}; seeds {OUT['seeds']}")
print("runs per variant:", t1["frame"].groupby("variant").size().to_dict())
claim_lines("Table 1:")

# %% tags=["nbval-ignore-output"]
print(plotting.to_markdown(OUT["tables"]["table1"].drop(columns=["data"]), "%.2g"))
show("table1_curvature")
claim_lines("Table 1:", full=True)

# %% [markdown]
# Training curves of every variant (training objective and test accuracy per epoch, mean over seeds):

# %% tags=["nbval-ignore-output"]
show("training_curves")

# %% [markdown]
# ## 6. Robustness, gradient stability and training time
#
# The abstract's further claims, whose settings and numbers are [PDF]: off-the-shelf robustness
# (accuracy under PGD-ℓ2 of growing radius, on the Table 1 models), "more stable gradients" (the
# cosine similarity between the input gradient at x and at x plus small Gaussian noise), and the
# training-time overhead of each variant relative to standard training, from the measured training
# clocks (evaluation excluded). As in §5, the checked cell prints the statuses.

# %%
claim_lines("robust off the shelf", "stable gradients")

# %% tags=["nbval-ignore-output"]
show("robustness")
print(plotting.to_markdown(OUT["tables"]["robustness"], "%.2g"))
claim_lines("robust off the shelf", full=True)
show("gradient_stability")
claim_lines("stable gradients", full=True)

# %% [markdown]
# Training time depends on the machine; the cell below is not compared by nbval.

# %% tags=["nbval-ignore-output"]
show("training_time")
print(plotting.to_markdown(OUT["tables"]["overhead"], "%.3g"))
claim_lines(*TIMED, full=True)

# %% [markdown]
# ## 7. Verdicts
#
# The full list (also `tables/lcnn/scorecard.csv`, rendered into `papers.md` by
# `python -m curvlab.repro.papers`). Table 1 at paper scale (ResNet-18, 200 epochs) and the
# dataset × architecture grid (ResNet-34, VGG-11) have runnable configurations and need a GPU. The
# ResNet verdicts print their status here, their numbers in the unchecked cells of §5–§6; the two
# verdicts on training time, which quote measured clocks, only there.

# %%
for v in VERDICTS:
    if not any(k in v.claim for k in TIMED):
        print(checked(v))


# %% [markdown]
# ### Run at paper scale
#
# `make reproduce SCALE=paper` (or `papermill -p SCALE paper notebooks/04_lcnn.ipynb out.ipynb`) runs
# the reference's settings; `CURVLAB_WORKERS=N` spreads the runs over N Dask workers and an interrupted
# sweep resumes. The estimate below scales this notebook's measured ci training clocks to the paper's
# epochs and examples (and, for the model, by the ratio of multiply-adds per image).

# %% tags=["nbval-ignore-output"]
def macs_per_image(cfg):
    size = cfg["input"]["size"]
    return multiply_adds(R.build_model(cfg), (cfg["input"]["channels"], size, size))


print("runnable:", R.PAPER_COMMAND)
if SCALE == "ci":
    ci, paper = R.settings("ci"), R.settings("paper")
    paper_cfg = R.table1_config("standard", "paper")
    n_paper = paper["n_train"] or len(data.load(paper_cfg["dataset"], "train").y)
    mac_ratio = macs_per_image(paper_cfg) / macs_per_image(R.table1_config("standard", "ci"))
    factor = paper["epochs"] * n_paper / (ci["epochs"] * ci["n_train"]) * mac_ratio
    seconds = OUT["table1"]["frame"].groupby("variant")["train_time_s"].mean()
    hours = (seconds * factor / 3600).reindex(list(R.TABLE1_VARIANTS)).rename(index=R.LABELS)
    print(f"paper scale: {paper['epochs']} epochs × {n_paper} images ({paper_cfg['dataset']}), "
          f"{mac_ratio:.0f}× the ci model's multiply-adds per image")
    print(plotting.to_markdown(hours.rename("single-thread CPU hours").rename_axis("variant").reset_index(),
                               "%.3g"))
    print(f"total ≈ {hours.sum():.3g} single-thread CPU hours per seed: a GPU job")
