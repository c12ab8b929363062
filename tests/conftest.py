
import pytest
import torch


# Results and figures written by tests go to a temporary folder, never into the repository.
@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("CURVLAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("CURVLAB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("CURVLAB_PROGRESS", "0")
    yield


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (several-fold on a loaded 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
