"""Hessian products for a block of vectors: vmapped against looped, as ratios to a gradient.

Models: the MNIST MLP 784-20-20-20-10 (sigmoid, batch 1000) and a small CNN
conv(1->8, 5x5)-tanh-maxpool 2-linear on 28x28 (batch 256), cross-entropy, float32, random data.
Rows (median of ``--repeats`` calls, interleaved): one gradient; building ``HessianOperator``
(``linearize``: trace of the forward-over-reverse linearisation; ``double_backward``: the gradient
with its graph); one product; a block of 8 products looped and vmapped (``torch.vmap`` over the
linearised product; ``is_grads_batched`` for double backward); a block by ``torch.func.jvp`` of
``torch.func.grad``, looped and vmapped, with no linearisation reused.

    python benchmarks/hessian.py [--threads 1] [--repeats 15]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from curvlab import models
from curvlab.curvature import HessianOperator, loss_function, model_function, parameter_names

K = 8


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def problems():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = models.mlp([784, 20, 20, 20, 10], "sigmoid")
    yield "mlp 784-20-20-20-10, batch 1000", mlp, torch.rand(1000, 784, generator=g), \
        torch.randint(0, 10, (1000,), generator=g)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 12 * 12, 10))
    yield "cnn conv8-tanh-pool-linear, batch 256", cnn, torch.rand(256, 1, 28, 28, generator=g), \
        torch.randint(0, 10, (256,), generator=g)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--peers", default=None, help="unused (no peer is timed here); `make bench` passes it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, block of {K}, median ms")
    for title, model, x, y in problems():
        rows = measure(model, x, y, args.repeats)
        print(f"\n{title}")
        for name, ms in rows.items():
            print(f"  {name:34s} {ms:9.2f} ms  {ms / rows['gradient']:6.2f}x gradient")


def measure(model, x, y, repeats):
    """Median ms of every row for one model and batch."""
    loss_fn = loss_function("cross_entropy")
    params = [p.detach() for p in model.parameters()]
    block = [torch.randn(K, *p.shape) for p in params]

    def gradient():
        model.zero_grad()
        loss_fn(model(x), y).backward()

    rows = {"gradient": timed(gradient, repeats)}
    for method in ("linearize", "double_backward"):
        rows[f"setup [{method}]"] = timed(
            lambda m=method: HessianOperator(model, "cross_entropy", x, y, method=m), max(3, repeats // 5))
        op = HessianOperator(model, "cross_entropy", x, y, method=method)
        rows[f"product [{method}]"] = timed(lambda op=op: op([b[0] for b in block]), repeats)
        rows[f"block looped [{method}]"] = timed(lambda op=op: op.matmat(block, vmap=False), repeats)
    lin = HessianOperator(model, "cross_entropy", x, y, method="linearize")
    rows["block vmapped [linearize]"] = timed(lambda: lin.matmat(block, vmap=True), repeats)
    dbl = HessianOperator(model, "cross_entropy", x, y, method="double_backward")
    rows["block batched [double_backward]"] = timed(
        lambda: torch.autograd.grad(dbl._graph_gradient, dbl._leaves, block, retain_graph=True,
                                    is_grads_batched=True), repeats)
    f = model_function(model, x, parameter_names(model))
    grad = torch.func.grad(lambda *p: loss_fn(f(*p), y), argnums=tuple(range(len(params))))

    def fwd_over_rev(*v):
        return torch.func.jvp(grad, tuple(params), v)[1]
    rows["block looped [jvp of grad]"] = timed(
        lambda: [fwd_over_rev(*[b[j] for b in block]) for j in range(K)], repeats)
    rows["block vmapped [jvp of grad]"] = timed(lambda: torch.vmap(fwd_over_rev)(*block), repeats)
    return rows

if __name__ == "__main__":
    main()
