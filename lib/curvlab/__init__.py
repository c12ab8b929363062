"""curvlab: curvature-aware neural-network training, re-implemented from four papers.

Modules (each one idea):
  data        ``load(name, split)``: real datasets with checksums, stand-ins labelled as such
  models      the papers' reference architectures
  experiment  a run is a config turned into a cached, seeded JSON record
  training    a plain training loop with budgets, evaluation and divergence detection
  plotting    one seaborn theme; figures saved with the CSV of the data drawn; tables
  losses      the one loss registry: values, closed-form output derivatives, sampled targets
  curvature   matrix-free GGN-vector products on the functional view of a model (torch.func)
  hessian     exact Hessian products at a point, per-sample input gradients and Hessian products
  krylov      conjugate gradient and power iteration on callables
  isaac       ISAAC Newton layers (input-based curvature preconditioning)
  isaac_kfac  the (λ_g, λ_a) generalisation ζ and K-FAC, for the paper's comparisons
  sgn         stochastic generalized Gauss-Newton optimizer (``SGNConfig`` in sgn_config, its scalar
              rules in sgn_rules, its input checks in sgn_checks, the reference init in sgn_init)
  grouped_newton  per-group learning rates from Newton summaries (``GroupedNewtonConfig`` in
              grouped_newton_config, directions in grouped_newton_directions, groups in
              grouped_newton_partition, ḡ/H̄/D in grouped_newton_summaries, the cubic solve in
              grouped_newton_solver)
"""
from importlib import import_module as _import_module

__version__ = "0.1.0"

# Sub-modules are imported lazily so that ``import curvlab`` stays cheap and a notebook pays only
# for what it uses.
_SUBMODULES = {"data", "models", "experiment", "training", "plotting", "losses", "curvature", "hessian",
               "krylov", "isaac", "isaac_kfac", "sgn", "grouped_newton", "grouped_newton_partition",
               "grouped_newton_summaries", "grouped_newton_solver"}
_ATTRIBUTES = {"SGN": "sgn", "SGNConfig": "sgn", "GroupedNewton": "grouped_newton",
               "GroupedNewtonConfig": "grouped_newton"}


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    if name in _ATTRIBUTES:
        return getattr(_import_module(f"{__name__}.{_ATTRIBUTES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_SUBMODULES | set(_ATTRIBUTES))
