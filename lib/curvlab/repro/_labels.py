"""What every reproduction prints about its data and seeds, in one place."""
from __future__ import annotations

from curvlab import experiment


def data_label(dataset: str) -> str:
    """``"mnist (real)"`` or ``"mnist_fashion_20 (stand-in for CIFAR-100)"``: stand-ins named as such."""
    info = experiment.dataset_label(dataset)
    if info and info.get("stand_in_for"):
        return f"{dataset} (stand-in for {info['stand_in_for']})"
    return f"{dataset} (real)"


def notebook_seeds(base: list[int], scale: str, seed: int = 0) -> list[int]:
    """A scale's seeds; at ci scale shifted by the notebook's ``SEED`` (0 keeps them), else as given."""
    return [seed + s for s in base] if scale == "ci" else list(base)
