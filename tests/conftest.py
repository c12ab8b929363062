
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
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
