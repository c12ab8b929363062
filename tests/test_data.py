"""curvlab.data: real datasets (shape + checksum), fixtures in the official CIFAR/SVHN formats,
generators, stand-ins and the missing-data error."""
import gzip
import pickle

import numpy as np
import pytest
import torch

from curvlab import data, fetch


def need(name):
    if not data.available(name):
        pytest.skip(f"{name} is not installed here (run `make data`); its loader is tested on fixtures")


@pytest.mark.parametrize("name,n_train,n_test,shape", [
    ("mnist", 60000, 10000, (28, 28)),
    ("fashion_mnist", 60000, 10000, (28, 28)),
])
def test_idx_datasets_shape_dtype_and_checksum(name, n_train, n_test, shape):
    need(name)
    tr, te = data.load(name, "train"), data.load(name, "test")
    assert tr.x.shape == (n_train, *shape) and te.x.shape == (n_test, *shape)
    assert tr.x.dtype == torch.uint8 and tr.y.dtype == torch.int64
    assert set(tr.y.unique().tolist()) == set(range(10))
    # load() only returns data whose MD5s matched; check the published values are the ones used
    folder = "MNIST" if name == "mnist" else "FashionMNIST"
    assert len(data.IDX_MD5[folder]) == 4


def test_mnist_known_statistics():
    need("mnist")
    x = data.load("mnist", "train").x.float() / 255
    assert abs(x.mean().item() - 0.1307) < 1e-4
    assert torch.bincount(data.load("mnist", "train").y).tolist()[1] == 6742


def test_boston_split_and_checksum():
    need("boston")
    tr, te = data.load("boston", "train"), data.load("boston", "test")
    assert tr.x.shape == (404, 13) and te.x.shape == (102, 13)
    assert tr.x.dtype == torch.float32 and tr.y.shape == (404, 1)
    rows = torch.cat([tr.x, te.x])
    assert len(torch.unique(rows, dim=0)) == 506          # a partition: no row in both


def test_corrupt_file_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    (tmp_path / "boston").mkdir()
    (tmp_path / data.BOSTON_FILE).write_text("CRIM\n1\n")
    data._load_cached.cache_clear()
    with pytest.raises(data.DatasetNotFound, match="make data"):
        data.load("boston", "train")


def test_missing_dataset_error_names_make_data_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    data._load_cached.cache_clear()
    for name, path in [("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                       ("fashion_mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
                       ("cifar10", "cifar-10-batches-py/data_batch_1"),
                       ("boston", "boston/boston_house_prices.csv")]:
        with pytest.raises(data.DatasetNotFound) as err:
            data.load(name, "train")
        assert "make data" in str(err.value) and str(tmp_path / path) in str(err.value)


def test_unknown_names_raise_valueerror():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="split"):
        data.load("sine", "valid")


def test_idx_roundtrip_and_header_check():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(data.parse_idx(fetch.idx_bytes(arr)), arr)
    with pytest.raises(ValueError):
        data.parse_idx(fetch.idx_bytes(arr)[:-1])


def test_idx_reader_from_generated_files(tmp_path, monkeypatch):
    """A torchvision-layout folder with gzipped IDX files whose MD5s we declare is read back exactly."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5).astype(np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    fake = {}
    for split in ("train", "t10k"):
        for kind, arr in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y)):
            payload = fetch.idx_bytes(arr)
            (raw / f"{split}-{kind}.gz").write_bytes(gzip.compress(payload))
            fake[f"{split}-{kind}"] = data.md5(payload)
    monkeypatch.setitem(data.IDX_MD5, "MNIST", fake)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    data._load_cached.cache_clear()
    ds = data.load("mnist", "test")
    assert torch.equal(ds.x, torch.from_numpy(x)) and torch.equal(ds.y, torch.from_numpy(y).long())
    data._load_cached.cache_clear()


def _write_pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def test_cifar10_reader_on_fixture(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, 4))}
        _write_pickle(folder / name, d)
        batches[name] = d
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    data._load_cached.cache_clear()
    tr, te = data.load("cifar10", "train"), data.load("cifar10", "test")
    assert tr.x.shape == (20, 3, 32, 32) and te.x.shape == (4, 3, 32, 32) and tr.x.dtype == torch.uint8
    # channel layout: the first 1024 bytes of a row are the red plane, row-major
    row = batches["test_batch"][b"data"][2]
    assert np.array_equal(te.x[2, 0].numpy(), row[:1024].reshape(32, 32))
    assert np.array_equal(te.x[2, 2].numpy(), row[2048:].reshape(32, 32))
    assert te.y.tolist() == [int(v) for v in batches["test_batch"][b"labels"]]
    data._load_cached.cache_clear()


def test_cifar100_reader_on_fixture(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    for split in ("train", "test"):
        _write_pickle(tmp_path / "cifar-100-python" / split,
                      {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
                       b"fine_labels": [5, 99, 0], b"coarse_labels": [1, 2, 3]})
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    data._load_cached.cache_clear()
    ds = data.load("cifar100", "test")
    assert ds.y.tolist() == [5, 99, 0] and ds.classes == 100
    data._load_cached.cache_clear()


def test_svhn_reader_on_fixture(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(3)
    (tmp_path / "SVHN").mkdir()
    stored = {}
    for split in ("train", "test"):
        X = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)        # H x W x C x N, as published
        y = np.array([[1], [10], [3], [10], [9], [2]], dtype=np.uint8)  # 10 means digit 0
        scipy_io.savemat(tmp_path / "SVHN" / f"{split}_32x32.mat", {"X": X, "y": y})
        stored[split] = X
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    data._load_cached.cache_clear()
    ds = data.load("svhn", "train")
    assert ds.x.shape == (6, 3, 32, 32)
    assert ds.y.tolist() == [1, 0, 3, 0, 9, 2]
    assert np.array_equal(ds.x[4, 1].numpy(), stored["train"][:, :, 1, 4])
    data._load_cached.cache_clear()


def test_sine_matches_the_spec():
    tr, te = data.load("sine", "train", frequency=100.0), data.load("sine", "test", frequency=100.0)
    assert tr.x.shape == (7000, 1) and te.x.shape == (3000, 1) and tr.x.dtype == torch.float32
    assert tr.x.abs().max() <= 1
    resid = tr.y - torch.sin(100.0 * tr.x.double()).float()
    assert 0.008 < resid.std().item() < 0.012                 # noise std 0.01
    again = data.load("sine", "train", frequency=100.0, seed=1)
    assert not torch.equal(again.x, tr.x)


def test_two_moons_generator():
    ds = data.load("two_moons", "train", n=400, noise=0.0)
    x, y = ds.x.double(), ds.y
    outer = x[y == 0]
    assert torch.allclose(outer.norm(dim=1), torch.ones(len(outer), dtype=torch.float64), atol=1e-6)
    inner = x[y == 1] - torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose(inner.norm(dim=1), torch.ones(len(inner), dtype=torch.float64), atol=1e-6)
    assert not torch.equal(data.load("two_moons", "test", n=400).x, data.load("two_moons", "train", n=400).x)


def test_digits():
    pytest.importorskip("sklearn")
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    assert len(tr) + len(te) == 1797 and tr.x.shape[1:] == (8, 8) and tr.x.max() <= 16


def test_stand_ins_are_labelled_and_shaped():
    need("mnist")
    need("fashion_mnist")
    f32 = data.load("fashion_mnist_32", "test")
    assert f32.x.shape == (10000, 3, 32, 32) and f32.stand_in_for == "CIFAR-10"
    assert "stand-in for CIFAR-10" in f32.label
    base = data.load("fashion_mnist", "test").x
    assert torch.equal(f32.x[:, 1, 2:30, 2:30], base) and f32.x[:, :, :2].sum() == 0
    assert data.load("mnist_32", "test").stand_in_for == "SVHN"
    u = data.load("mnist_fashion_20", "test")
    assert u.x.shape == (20000, 3, 32, 32) and u.y.max() == 19 and u.stand_in_for == "CIFAR-100"
    assert data.load("mnist", "test").stand_in_for is None


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def bad_write():
        import os as _os
        real = _os.fdopen

        def fdopen(fd, mode):
            fh = real(fd, mode)
            fh.write(b"partial")
            raise KeyboardInterrupt
        _os.fdopen, saved = fdopen, real
        try:
            fetch.atomic_write(target, b"new")
        finally:
            _os.fdopen = saved

    with pytest.raises(KeyboardInterrupt):
        bad_write()
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def _fake_mnist(tmp_path, monkeypatch):
    """A tiny MNIST folder of gzipped IDX files whose MD5s the test declares; returns (raw, payloads)."""
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4).astype(np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    payloads = {f"{split}-{kind}": fetch.idx_bytes(arr) for split in ("train", "t10k")
                for kind, arr in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y))}
    for fname, payload in payloads.items():
        (raw / f"{fname}.gz").write_bytes(gzip.compress(payload))
    monkeypatch.setitem(data.IDX_MD5, "MNIST", {f: data.md5(p) for f, p in payloads.items()})
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    data._load_cached.cache_clear()
    return raw, payloads


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_broken_gz_is_dataset_not_found_and_make_data_repairs_it(tmp_path, monkeypatch, capsys, damage):
    raw, payloads = _fake_mnist(tmp_path, monkeypatch)
    gz = raw / "t10k-images-idx3-ubyte.gz"
    blob = gz.read_bytes()
    gz.write_bytes(blob[: len(blob) // 2] if damage == "truncated" else b"plain text, not gzip")
    with pytest.raises(data.DatasetNotFound, match="make data") as err:
        data.load("mnist", "test")
    assert str(gz) in str(err.value)
    assert data.available("mnist") is False
    calls = []
    refetch = lambda: calls.append(1) or fetch._write_verified_idx("MNIST", payloads) or "re-fetched"  # noqa: E731
    monkeypatch.setitem(fetch.FETCHERS, "mnist", refetch)
    assert fetch.main(["mnist", "--no-apt"]) == 0                  # make data
    assert calls == [1] and "ok (re-fetched" in capsys.readouterr().out
    assert not gz.exists()                                         # the broken download is gone
    data._load_cached.cache_clear()
    assert data.load("mnist", "test").x.shape == (4, 28, 28)
    data._load_cached.cache_clear()
