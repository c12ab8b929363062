"""curvlab.lcnn.models / blocks: shapes, spectral normalisation on the true operator, the residual Lipschitz
bound against dense Jacobians, one β per activation use, optimizer groups, errors."""
import math

import pytest
import torch
from torch import nn

from curvlab.lcnn import models
from curvlab.lcnn.activations import CenteredSoftplus
from curvlab.lcnn.batchnorm import LipschitzBatchNorm2d
from curvlab.lcnn.blocks import ConvBNBlock, LipschitzResidualBlock
from curvlab.lcnn.spectral import conv_operator_matrix, operator_norm, spectral_estimate

W = 1 / 16        # channels 4 / 8 / 16 / 32
TINY = (1, 1, 1, 1)


def _build(name, variant, **kw):
    if name == "resnet18":
        return models.resnet18(5, variant, width=W, input_size=8, **kw)
    if name == "resnet34":
        return models.resnet34(5, variant, width=W, input_size=8, **kw)
    return models.vgg11(5, variant, width=W, input_size=16, **kw)


def _is_parametrized(module):
    return hasattr(module, "parametrizations") and "weight" in module.parametrizations


def _bn_lipschitz(bn):
    """Eval-mode Lipschitz constant of an affine-free batch norm: max_c 1/sqrt(running_var_c + eps)."""
    if isinstance(bn, LipschitzBatchNorm2d):
        return float(bn.lipschitz().detach())
    return float(1.0 / torch.sqrt(bn.running_var.min() + bn.eps))


def _convbn_lipschitz(block):
    return float(operator_norm(block.conv, block.input_size)) * _bn_lipschitz(block.bn)


def _warm_up(module, shape, steps=3, scale=3.0):
    """A few training-mode forwards: power iterations and non-trivial BN running statistics."""
    module.train()
    with torch.no_grad():
        for _ in range(steps):
            module(scale * torch.randn(*shape))
    module.eval()


@pytest.mark.parametrize("variant", models.VARIANTS)
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "vgg11"])
def test_output_shapes(name, variant):
    torch.manual_seed(0)
    size = 16 if name == "vgg11" else 8
    net = _build(name, variant)
    assert net(torch.randn(3, 3, size, size)).shape == (3, 5)
    one_channel = _build(name, variant, in_channels=1) if name != "vgg11" else \
        models.vgg11(5, variant, width=W, in_channels=1, input_size=32)
    size = 32 if name == "vgg11" else 8
    assert one_channel.eval()(torch.randn(2, 1, size, size)).shape == (2, 5)


@pytest.mark.parametrize("variant", models.VARIANTS)
def test_moons_mlp_shapes(variant):
    net = models.moons_mlp(variant, hidden=(8, 6))
    assert net(torch.randn(4, 2)).shape == (4, 2)
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 3


def test_width_and_blocks():
    net = models.resnet18(10, width=0.25, blocks=TINY, input_size=8)
    assert net.fc.in_features == 128 and net.stem[0].conv.out_channels == 16
    assert [len(s) for s in net.stages] == [1, 1, 1, 1]
    assert [len(s) for s in models.resnet34(10, width=W, input_size=8).stages] == [3, 4, 6, 3]
    assert models.resnet18(10, width=1e-3, blocks=TINY, input_size=8).fc.in_features == 1   # max(1, ·)
    assert models.vgg11(10, width=W, input_size=32).fc.in_features == 32 * 2 * 2


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_every_lcnn_conv_is_1_lipschitz_at_its_input_size(name):
    torch.manual_seed(1)
    net = _build(name, "lcnn", **({"blocks": TINY} if name == "resnet18" else {}))
    size = 16 if name == "vgg11" else 8
    seen = {}
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.__setitem__(m, args[0].shape[-1]))
             for b in net.modules() if isinstance(b, ConvBNBlock)]
    _warm_up(net, (2, 3, size, size), steps=40)     # 15 iterations at construction + 40 training ones
    for h in hooks:
        h.remove()
    blocks = [b for b in net.modules() if isinstance(b, ConvBNBlock)]
    assert len(blocks) == (8 if name == "vgg11" else 1 + 4 * 2 + 3)
    for block in blocks:
        assert seen[block] == block.input_size      # normalised for the size it actually sees
        original = block.conv.parametrizations.weight.original
        sigma = torch.linalg.matrix_norm(conv_operator_matrix(block.conv, block.input_size, original), 2)
        norm = operator_norm(block.conv, block.input_size)
        assert norm == pytest.approx(float(sigma) / spectral_estimate(block.conv), rel=1e-10)
        # σ̂ = ⟨u, A v⟩ underestimates σ, so W/σ̂ has norm >= 1; power iteration brings it close to 1.
        assert 1 - 1e-9 <= norm <= 1.02


@pytest.mark.usefixtures("float64")
def test_lcnn_moons_linears_have_spectral_norm_one():
    torch.manual_seed(2)
    net = models.moons_mlp("lcnn", hidden=(16, 16))
    _warm_up(net, (32, 2), steps=10)
    for linear in (m for m in net.modules() if isinstance(m, nn.Linear)):
        assert torch.linalg.matrix_norm(linear.weight, 2).item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("variant", ["lcnn", "standard"])
@pytest.mark.parametrize("c_in,c_out,stride", [(2, 3, 2), (3, 3, 1)])
def test_residual_block_formula_and_lipschitz_bound(variant, c_in, c_out, stride):
    torch.manual_seed(3)
    block = LipschitzResidualBlock(c_in, c_out, variant, input_size=4, stride=stride)
    assert isinstance(block.shortcut, ConvBNBlock if (stride, c_in) != (1, c_out) else nn.Identity)
    _warm_up(block, (8, c_in, 4, 4))
    x = torch.randn(1, c_in, 4, 4)
    h = x / math.sqrt(2)
    residual = block.conv2.bn(block.conv2.conv(block.act1(block.conv1.bn(block.conv1.conv(h)))))
    by_hand = block.act2(0.5 * (residual + block.shortcut(h)))
    assert torch.allclose(block(x), by_hand, atol=1e-14)

    jac = torch.autograd.functional.jacobian(lambda v: block(v.view(1, c_in, 4, 4)).flatten(), x.flatten())
    lip_f = _convbn_lipschitz(block.conv2) * _convbn_lipschitz(block.conv1)     # act₁ is 1-Lipschitz
    lip_s = _convbn_lipschitz(block.shortcut) if isinstance(block.shortcut, ConvBNBlock) else 1.0
    bound = (lip_f + lip_s) / (2 * math.sqrt(2))
    assert torch.linalg.matrix_norm(jac, 2).item() <= bound * (1 + 1e-9)
    # Without the ½ and the 1/√2 the same pieces give a bound 2√2 times larger: the scaling is real.
    assert bound < lip_f + lip_s


def test_standard_and_softplus_wd_have_no_lcnn_layers():
    for variant, beta in [("standard", 1000.0), ("softplus_wd", 10.0)]:
        for net in (_build("resnet18", variant, blocks=TINY), _build("vgg11", variant),
                    models.moons_mlp(variant, hidden=(4,))):
            assert not list(models.beta_modules(net)) and not list(models.lipschitz_bn_modules(net))
            assert not any(isinstance(m, CenteredSoftplus) for m in net.modules())
            softplus = [m for m in net.modules() if isinstance(m, nn.Softplus)]
            assert softplus and all(m.beta == beta for m in softplus)
            assert not any(_is_parametrized(m) for m in net.modules() if isinstance(m, nn.Conv2d))
            assert all(not m.affine for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize("variant", models.VARIANTS)
def test_heads(variant):
    assert _is_parametrized(_build("resnet18", variant, blocks=TINY).fc)   # PyTorch SN in every ResNet
    assert not _is_parametrized(_build("vgg11", variant).fc)


def _call_counts(net, x):
    counts = {}
    hooks = [m.register_forward_hook(lambda m, a, o: counts.__setitem__(m, counts.get(m, 0) + 1))
             for m in set(models.beta_modules(net))]
    net(x)
    for h in hooks:
        h.remove()
    return counts


def test_lcnn_resnet18_has_one_beta_per_activation_use():
    net = models.resnet18(5, "lcnn", width=W, input_size=8)
    counts = _call_counts(net, torch.randn(2, 3, 8, 8))
    assert len(counts) == 1 + 2 * 8 and set(counts.values()) == {1}     # stem + 2 per block, each once
    assert len(list(models.beta_modules(net))) == 17
    assert len({id(m.log_beta) for m in models.beta_modules(net)}) == 17
    assert len(list(models.lipschitz_bn_modules(net))) == 1 + 8 * 2 + 3  # stem, 2 per block, 3 shortcuts
    assert all(m.beta.item() == pytest.approx(5.0) for m in models.beta_modules(net))


def test_vgg11_beta_sharing():
    x = torch.randn(2, 3, 16, 16)
    per_layer = _build("vgg11", "lcnn")
    assert set(_call_counts(per_layer, x).values()) == {1} and len(_call_counts(per_layer, x)) == 8
    shared = _build("vgg11", "lcnn", shared_beta=True)
    counts = _call_counts(shared, x)
    assert len(counts) == 1 and list(counts.values()) == [8]
    uses = list(models.beta_modules(shared))
    assert len(uses) == 8 and len(set(uses)) == 1                        # one β counted once per use


def test_parameter_groups_exclude_log_beta_and_log_gamma():
    net = models.resnet18(5, "lcnn", width=W, blocks=TINY, input_size=8)
    groups = models.parameter_groups(net, 5e-4)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decay = {id(p) for g in groups if g["weight_decay"] == 5e-4 for p in g["params"]}
    named = dict(net.named_parameters())
    expected = {id(p) for n, p in named.items() if n.endswith(("log_beta", "log_gamma"))}
    assert no_decay == expected and len(expected) == 9 + 12                 # 9 β, 12 γ
    assert decay == {id(p) for p in named.values()} - expected
    assert any(n.endswith("parametrizations.weight.original") for n in named)  # SN weights decay too
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()                                                     # β is trained by the loss
    assert all(m.log_beta.grad is not None and m.log_beta.grad.isfinite() for m in models.beta_modules(net))
    standard = models.parameter_groups(models.moons_mlp("standard", hidden=(4,)), 1e-4)
    assert len(standard) == 1 and standard[0]["weight_decay"] == 1e-4


@pytest.mark.usefixtures("float64")
def test_lcnn_state_dict_loads_without_a_forward():
    torch.manual_seed(4)
    trained = models.resnet18(5, "lcnn", width=W, blocks=TINY, input_size=8)
    _warm_up(trained, (4, 3, 8, 8))
    fresh = models.resnet18(5, "lcnn", width=W, blocks=TINY, input_size=8)
    fresh.load_state_dict(trained.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(fresh.eval()(x), trained(x), atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="variant"):
        models.resnet18(10, "relu")
    with pytest.raises(ValueError, match="variant"):
        models.moons_mlp("lipschitz")
    for bad in (0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="width"):
            models.resnet18(10, width=bad)
        with pytest.raises(ValueError, match="width"):
            models.vgg11(10, width=bad)
    with pytest.raises(ValueError, match="blocks"):
        models.resnet18(10, blocks=(1, 1, 1))
    with pytest.raises(ValueError, match="blocks"):
        models.resnet34(10, blocks=(1, 0, 1, 1))
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet18(0)
    with pytest.raises(ValueError, match="input_size"):
        models.vgg11(10, input_size=8)
    with pytest.raises(ValueError, match="hidden"):
        models.moons_mlp("lcnn", hidden=(4, 0))
    with pytest.raises(ValueError, match="weight_decay"):
        models.parameter_groups(models.moons_mlp(), -1e-4)
