"""GroupedNewton cost: one summaries call (g_bar, H_bar, diag D3) per route, in gradient-step equivalents.

Models (batch 256, cross-entropy, float32, torch's default init: timings do not depend on it): the MNIST MLP 784-1024-200-100-10, tanh (S = 8 canonical groups), and LeNet-5,
conv6-conv16 (5x5, tanh, 2x2 max-pool) then FC 120-84-10, on 3x32x32 (S = 10). Data: synthetic
(uniform [0, 1] pixels, labels from a random linear teacher). The direction u is the gradient of
another batch.

Rows, measured interleaved in one process (the order rotated every repeat; median reported):
  gradient               zero_grad + forward + loss + backward (the unit)
  sgd step               gradient + ``torch.optim.SGD(momentum=0.9).step`` (the unit of the full step)
  nested (baseline)      ``summaries(route="nested")``: the reference's nested reverse mode written
                         faithfully (1 forward, 1 backward, 2S higher-order backward passes over
                         shrinking parameter sets)
  auto                   ``summaries(route="auto")``, the default (see curvlab.grouped_newton_summaries)
  nested / auto, order 2 the same with ``order3=False`` (what the Newton and ridge rules need)
  hessian(phi) [H only]  ``torch.func.hessian`` of phi(eta): forward-over-reverse, vmapped over the S
                         tangents
  nested jvp [D3 only]   D3_s by three nested ``torch.func.jvp`` along e_s, s = 1..S
  is_grads_batched       g_bar, H_bar rows and diag D3 by batched backward passes over one-hot
                         cotangents (the reference's newer ``hg_batched``)
  full step              ``GroupedNewton.step`` averaged over a period of 10 steps (one recomputation on
                         a separate summary batch of 256), against an SGD step; skipped if
                         ``curvlab.grouped_newton`` does not import

Targets: auto <= 1.0x the nested baseline on both models and <= 2S + 2 gradients; the full step
amortised over period 10 <= 2x an SGD step. The torch.func and batched rows are orders of magnitude
slower and are timed on fewer repeats (``--slow-repeats``), without a warm-up call.

Both the wall time and the CPU time of this process (``time.process_time``, all its threads) are
recorded; ``--clock`` chooses which one the ratios and targets use (wall by default). On a machine
shared with other jobs the CPU time is the steadier one: it does not count the waits for a core.

Large CPU tensors are freed to the OS and page-faulted in afresh at every allocation under glibc's
default malloc settings, which makes timings slow and noisy; by default the script re-executes itself
with malloc settings that keep freed memory (``--malloc default`` measures the environment as it is).

    python benchmarks/grouped_newton.py [--quick] [--threads 1 2] [--clock wall|cpu] [--repeats N]
        [--out results/bench/grouped_newton.json]
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call

from curvlab import models
from curvlab.experiment import atomic_write_json, cpu_name
from curvlab.grouped_newton_partition import make_partition
from curvlab.grouped_newton_summaries import restricted_loss, summaries
from curvlab.losses import loss_function

BATCH = 256
PERIOD = 10
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                "MALLOC_TOP_PAD_": "536870912"}
TARGETS = {"auto_vs_nested": 1.0, "full_step_vs_sgd": 2.0}       # and auto <= 2S + 2 gradients
MODELS = {
    "mlp 784-1024-200-100-10": (lambda: models.mlp([784, 1024, 200, 100, 10], "tanh"), (784,)),
    "lenet-5 (3x32x32)": (lambda: models.conv_net((3, 32, 32), [(6, 5), (16, 5)], [120, 84], 10, "tanh"),
                          (3, 32, 32)),
}
SLOW = ("hessian(phi) [H only]", "nested jvp [D3 only]", "is_grads_batched")
ROUTE_ROWS = ("nested (baseline)", "auto", "nested, order 2", "auto, order 2", *SLOW)


def timed_rows(rows: dict, repeats: int, warmup: int, slow: dict[str, int]) -> dict[str, dict]:
    """Per row: median wall and CPU seconds per call and the calls timed; interleaved, order rotated.

    CPU seconds (``time.process_time``, all threads of this process) do not count the time the process
    waits for a core, so on a machine shared with other jobs they are the steadier measure. A row in
    ``slow`` is timed on that many of the repeats only (spread evenly over them).
    """
    names = list(rows)
    for _ in range(warmup):
        for name in names:
            if name not in slow:
                rows[name]()
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name in slow and (r % max(1, repeats // slow[name]) or len(wall[name]) >= slow[name]):
                continue
            start, start_cpu = time.perf_counter(), time.process_time()
            rows[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name]),
                   "n": len(wall[name])} for name in names}


def batched_summaries(model, loss_fn, x, y, u, partition):
    """g_bar, H_bar, diag D3 with ``is_grads_batched`` backward passes (one per order)."""
    names = list(partition.parameters)
    leaves = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters() if n in u}
    flat = [leaves[n] for n in names]
    groups = [[names.index(n) for n in g] for g in partition.names]
    S = partition.size
    eye = torch.eye(S)

    def contract(tensors, batched):
        """sum_{p in T_t} <tensors_p, u_p> per group t (tensors (S, *shape) if batched)."""
        out = []
        for g in groups:
            terms = [(tensors[i] * u[names[i]]).flatten(int(batched)).sum(-1) for i in g]
            out.append(sum(terms))
        return torch.stack(out, -1)

    L = loss_fn(functional_call(model, leaves, (x,)), y)
    grads = torch.autograd.grad(L, flat, create_graph=True)
    g = contract(grads, False)
    rows = torch.autograd.grad(g, flat, eye, create_graph=True, is_grads_batched=True)
    H = contract(rows, True)                                  # H[s, t]
    third = torch.autograd.grad(H.diagonal(), flat, eye, is_grads_batched=True, allow_unused=True,
                                materialize_grads=True)
    d3 = contract(third, True).diagonal()
    return g.detach(), H.detach(), d3.detach()


def nested_jvp_d3(phi, S):
    eta0 = torch.zeros(S)
    out = []
    for s in range(S):
        e = torch.zeros(S)
        e[s] = 1.0

        def d1(eta, e=e):
            return torch.func.jvp(phi, (eta,), (e,))[1]

        def d2(eta, e=e, d1=d1):
            return torch.func.jvp(d1, (eta,), (e,))[1]
        out.append(-torch.func.jvp(d2, (eta0,), (e,))[1])
    return torch.stack(out)


def load_grouped_newton():
    """The GroupedNewton optimizer class, or (None, reason)."""
    try:
        from curvlab.grouped_newton import GroupedNewton
        return GroupedNewton, None
    except Exception as err:                                  # not written yet, or broken: report, skip
        return None, f"{type(err).__name__}: {err}"


def relative_error(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def bench_model(name: str, repeats: int, warmup: int, slow_repeats: int, optimizer_cls,
                clock: str = "wall") -> dict:
    build, in_shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(math.prod(in_shape), 10, generator=g)

    def batch():
        xb = torch.rand(BATCH, *in_shape, generator=g)
        return xb, (xb.reshape(BATCH, -1) - 0.5).matmul(teacher).argmax(1)
    batches = [batch() for _ in range(PERIOD)]
    x, y = batches[0]
    summary_batch = batch()
    loss_fn = loss_function("cross_entropy")
    partition = make_partition(model, "canonical")
    S = partition.size
    xu, yu = batch()
    model.zero_grad(set_to_none=True)
    loss_fn(model(xu), yu).backward()
    u = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    rows = {}
    grad_model = copy.deepcopy(model)

    def gradient():
        grad_model.zero_grad(set_to_none=True)
        loss_fn(grad_model(x), y).backward()
    rows["gradient"] = gradient
    sgd_model = copy.deepcopy(model)
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=1e-3, momentum=0.9)
    calls = {"sgd": 0}

    def sgd_step():
        xb, yb = batches[calls["sgd"] % PERIOD]
        calls["sgd"] += 1
        sgd.zero_grad(set_to_none=True)
        loss_fn(sgd_model(xb), yb).backward()
        sgd.step()
    rows["sgd step"] = sgd_step

    def call(route, order3=True):
        return lambda: summaries(model, "cross_entropy", x, y, u, partition, route=route, order3=order3)
    rows["nested (baseline)"] = call("nested")
    rows["auto"] = call("auto")
    rows["nested, order 2"] = call("nested", order3=False)
    rows["auto, order 2"] = call("auto", order3=False)
    phi = restricted_loss(model, "cross_entropy", x, y, u, partition)
    rows["hessian(phi) [H only]"] = lambda: torch.func.hessian(phi)(torch.zeros(S))
    rows["nested jvp [D3 only]"] = lambda: nested_jvp_d3(phi, S)
    rows["is_grads_batched"] = lambda: batched_summaries(model, loss_fn, x, y, u, partition)

    if optimizer_cls is not None:
        opt_model = copy.deepcopy(model)
        opt = optimizer_cls(opt_model, "cross_entropy", period=PERIOD, warmup=0, damping=0.1,
                            summary_data=summary_batch)

        def period_of_steps():
            for xb, yb in batches:                            # steps 1 + 10k .. 10 + 10k: one recomputation
                opt.step(xb, yb)

        def period_of_sgd():
            for _ in range(PERIOD):
                sgd_step()
        rows["full step x10"] = period_of_steps
        rows["sgd step x10"] = period_of_sgd

    # agreement of the routes on this batch (float32), before timing
    ref = summaries(model, "cross_entropy", x, y, u, partition, route="nested")
    got = summaries(model, "cross_entropy", x, y, u, partition, route="auto")
    batched = batched_summaries(model, loss_fn, x, y, u, partition)
    agreement = {"auto vs nested": {k: relative_error(a, b) for k, a, b in zip("g H d3".split(), got, ref)},
                 "is_grads_batched vs nested": {k: relative_error(a, b)
                                                for k, a, b in zip("g H d3".split(), batched, ref)}}

    medians = timed_rows(rows, repeats, warmup, {r: slow_repeats for r in SLOW})
    m = {row: v[clock] for row, v in medians.items()}
    grad_s, sgd_s, base_s = m["gradient"], m["sgd step"], m["nested (baseline)"]
    result = {"parameters": models.count_parameters(model), "S": S, "clock": clock,
              "gradient_ms": 1e3 * grad_s, "sgd_step_ms": 1e3 * sgd_s, "agreement": agreement, "routes": {}}
    for row in ROUTE_ROWS:
        t = m[row]
        result["routes"][row] = {"time_ms": 1e3 * t, "ratio_to_gradient": t / grad_s,
                                 "ratio_to_baseline": t / base_s, "repeats": medians[row]["n"],
                                 "wall_ms": 1e3 * medians[row]["wall"], "cpu_ms": 1e3 * medians[row]["cpu"]}
    other = "cpu" if clock == "wall" else "wall"
    result[f"gradient_{other}_ms"] = 1e3 * medians["gradient"][other]
    result[f"auto_vs_nested_{other}"] = medians["auto"][other] / medians["nested (baseline)"][other]
    auto = result["routes"]["auto"]
    result["targets"] = {
        f"auto <= {TARGETS['auto_vs_nested']:.1f}x nested baseline":
            auto["ratio_to_baseline"] <= TARGETS["auto_vs_nested"],
        f"auto <= 2S+2 = {2 * S + 2} gradients": auto["ratio_to_gradient"] <= 2 * S + 2,
    }
    if optimizer_cls is not None:
        step_s, sgd10_s = m["full step x10"] / PERIOD, m["sgd step x10"] / PERIOD
        result["full_step"] = {"period": PERIOD, "time_ms": 1e3 * step_s, "sgd_step_ms": 1e3 * sgd10_s,
                               "ratio_to_sgd_step": step_s / sgd10_s, "ratio_to_gradient": step_s / grad_s,
                               f"ratio_to_sgd_step_{other}": medians["full step x10"][other]
                               / medians["sgd step x10"][other],
                               "recomputations": opt.stats.get("recomputations"),
                               "failures": opt.stats.get("failures")}
        result["targets"][f"full step (period {PERIOD}) <= {TARGETS['full_step_vs_sgd']:.1f}x SGD step"] = \
            result["full_step"]["ratio_to_sgd_step"] <= TARGETS["full_step_vs_sgd"]
    return result


def report(name: str, res: dict) -> None:
    other = "cpu" if res["clock"] == "wall" else "wall"
    print(f"\n{name}  ({res['parameters']:,} params, S = {res['S']}; gradient {res['gradient_ms']:.2f} ms, "
          f"SGD step {res['sgd_step_ms']:.2f} ms; ratios of {res['clock']} time)")
    header = f"  {'route':<24} {'ms':>9} {'x gradient':>11} {'x nested':>9} {'n':>4}"
    print(header + "\n  " + "-" * (len(header) - 2))
    for row, e in res["routes"].items():
        print(f"  {row:<24} {e['time_ms']:9.1f} {e['ratio_to_gradient']:10.2f}x {e['ratio_to_baseline']:8.2f}x"
              f" {e['repeats']:4d}")
    print(f"  ({other} time: auto / nested {res[f'auto_vs_nested_{other}']:.2f}x)")
    fs = res.get("full_step")
    if fs:
        print(f"  full GroupedNewton step, amortised over period {fs['period']}: {fs['time_ms']:.1f} ms = "
              f"{fs['ratio_to_sgd_step']:.2f}x an SGD step ({fs['sgd_step_ms']:.1f} ms) = "
              f"{fs['ratio_to_gradient']:.2f}x a gradient ({other} time: "
              f"{fs[f'ratio_to_sgd_step_{other}']:.2f}x an SGD step)")
    for pair, errs in res["agreement"].items():
        print(f"  {pair} (float32, max relative): " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    for target, met in res["targets"].items():
        print(f"  target {target}: {'met' if met else 'NOT met'}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="torch thread counts (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 15, --quick 5)")
    parser.add_argument("--slow-repeats", type=int, default=None,
                        help="timed calls of the torch.func and batched rows (default 2, --quick 1)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="the time the ratios and targets use: wall (default) or CPU time of this "
                             "process (steadier on a machine shared with other jobs); both are recorded")
    parser.add_argument("--peers", default=None, help="accepted for make bench; not used")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="tuned (default): re-run under glibc malloc settings that keep freed memory; "
                             "default: the environment as it is (slower, much noisier)")
    parser.add_argument("--out", type=Path, default=Path("results/bench/grouped_newton.json"))
    args = parser.parse_args(argv)
    if args.malloc == "tuned" and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = dict(os.environ, **TUNED_MALLOC)
        args_again = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *args_again], env)
    repeats = args.repeats or (5 if args.quick else 15)
    slow_repeats = min(repeats, args.slow_repeats or (1 if args.quick else 2))
    warmup = 2
    optimizer_cls, why = load_grouped_newton()
    if optimizer_cls is None:
        print(f"curvlab.grouped_newton not importable ({why}); skipping the full-step row")

    by_threads = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"GroupedNewton summaries cost, batch {BATCH}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}, {repeats} repeats (median; slow rows {slow_repeats}), {cpu_name()}, "
              f"malloc {'tuned' if os.environ.get('MALLOC_MMAP_THRESHOLD_') else 'default'}", flush=True)
        results = {}
        for name in args.models:
            print(f"{name}: measuring ...", flush=True)
            results[name] = bench_model(name, repeats, warmup, slow_repeats, optimizer_cls, args.clock)
            report(name, results[name])
        by_threads[str(threads)] = results

    primary = 2 if 2 in args.threads else args.threads[0]
    malloc = {k: os.environ[k] for k in TUNED_MALLOC if k in os.environ}
    record = {"benchmark": "grouped_newton", "batch": BATCH, "threads": primary, "clock": args.clock,
              "repeats": repeats,
              "slow_repeats": slow_repeats, "quick": args.quick, "malloc_env": malloc or "default",
              "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_name(),
              "targets": TARGETS, "full_step_skip_reason": why, "results": by_threads[str(primary)],
              "by_threads": by_threads,
              "all_targets_met": all(all(r["targets"].values()) for res in by_threads.values()
                                     for r in res.values())}
    atomic_write_json(args.out, record)
    print(f"\nwrote {args.out}")
    return record


if __name__ == "__main__":
    main()
