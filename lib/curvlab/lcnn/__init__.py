"""Low-curvature neural networks (Srinivas et al., NeurIPS 2022).

A network's normalised curvature C(x) = ‖∇²ₓℓ(x)‖ / (‖∇ₓℓ(x)‖ + ε) is bounded by its layers'
curvatures and slopes. LCNNs control each term: centred softplus activations with a learnable β
(:mod:`.activations`), batch norm with a Lipschitz constant capped at a learnable γ
(:mod:`.batchnorm`), convolutions and linear layers normalised to spectral norm 1 on the true
operator (:mod:`.spectral`), and penalties on Σβ, Σ|log γ| and the input-gradient norm
(:mod:`.regularizers`). :mod:`.measurement` measures C per sample by the power method on the core's
input-Hessian products; :mod:`.robustness` probes PGD-ℓ2 robustness and gradient stability.
"""
