"""ISAAC Newton, Table 2: cost of one training step as a ratio to a plain gradient step.

Models (batch 60, synthetic data, all linear layers preconditioned): the 5-layer ReLU MLPs of width
100, 400 and 1600 on 784 inputs / 10 classes (cross-entropy), and the 784-1000-500-30-500-1000-784
auto-encoder (MSE against its input). Methods: the plain gradient, ζ* (``isaac.apply_isaac``), and
ζ and K-FAC (``isaac_kfac.KroneckerPreconditioner``, one sampled-label backward per step).

Beside them (``main`` only, not the notebook's record), ``pypi``: the reference package ``isaac``
0.1.1 from PyPI (installed among the peers, ``benchmarks/peers.txt``), its ``isaac.Linear`` in every
layer of a third copy of the model, timed in the same interleaved rounds; the line ``zeta* / pypi``
is the ratio of the two medians.

Time: one full SGD step (forward, backward, optimizer step), methods measured interleaved in one
process with the order rotated every repeat; the median over repeats is reported.

What the ζ* time can reach. A linear layer (b rows, n inputs, m outputs) costs the plain step about
3·b·m·n multiply-adds (forward, input gradient, weight gradient). ζ* replaces the weight gradient by
(P G)ᵀ A at the same cost and adds the Gram matrix A Aᵀ (b²·n), the product P G (b²·m) and a b×b
Cholesky factorisation and inverse (about b³/2), so its extra arithmetic is about
b·(n + m) / (3·m·n) of the layer's: 10 % for a 400→400 layer at b = 60, 11-12 % over the whole
5×400 MLP. On top come two LAPACK calls per layer, whose fixed cost dominates at b = 60, and the
Python of the custom autograd Function. The 1.15× target therefore leaves almost nothing for either;
the ratio falls with width (b/n shrinks), as the wider models show. ``--methods floor`` measures
this directly: ``isaac.Linear`` with its weight gradient replaced by (K G)ᵀ A, K = I + A Aᵀ/(b·la)
unfactorised, i.e. the Function and every matrix product of ζ* but no solve (not a method: its
update is not ζ*).

Peak memory: the profiler's memory events (``profile_memory=True``) list every allocation and free
of torch's CPU allocator with its size; their running sum over one step, started with gradients
released, is the live memory the step adds, and its maximum is the step's transient peak. Peak =
memory held before the step (parameters, optimizer state, the batch) + that transient peak.
(``tracemalloc`` does not see torch's allocator, and the process RSS high-water mark cannot be
reset and is dominated by the libraries.) Scratch space that BLAS/LAPACK allocate themselves is
not counted, for any method.

    python benchmarks/isaac.py [--quick] [--threads 1 2] [--repeats N] [--methods isaac pypi zeta kfac floor]
    python benchmarks/isaac.py --record paper     # the notebook's Table 2 record at one scale

``--record SCALE`` runs Table 2 with the settings ``TABLE2[SCALE]`` of the notebook ``01_isaac`` and
stores it as that notebook's experiment record (``results/<scale>/01_isaac/table2-<hash>.json``), the
same record the notebook's Table 2 cell makes or reads; the paper-scale record adds width 6400.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import statistics
import sys
import time
import unittest.mock
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import curvlab.isaac
from curvlab import experiment, models
from curvlab.experiment import atomic_write_json
from curvlab.isaac import apply_isaac
from curvlab.isaac_kfac import KroneckerPreconditioner
from curvlab.linalg import identity

ROOT = Path(__file__).resolve().parents[1]
BATCH = 60
LA = LG = 0.1                      # cost does not depend on the damping values
LR = {"gradient": 1e-3, "isaac": 1e-3, "pypi": 1e-3, "zeta": 1e-3, "kfac": 1e-5, "floor": 1e-3}   # small: no drift or overflow
MODELS = {
    "mlp 5x100": lambda: models.mlp([784, 100, 100, 100, 100, 10]),
    "mlp 5x400": lambda: models.mlp([784, 400, 400, 400, 400, 10]),
    "mlp 5x1600": lambda: models.mlp([784, 1600, 1600, 1600, 1600, 10]),
    "auto-encoder": lambda: models.autoencoder(),
    "mlp 5x6400": lambda: models.mlp([784, 6400, 6400, 6400, 6400, 10]),   # paper scale only
}
DEFAULT_MODELS = ["mlp 5x100", "mlp 5x400", "mlp 5x1600", "auto-encoder"]
METHODS = ["isaac", "zeta", "kfac"]
# Table 2 of the notebook 01_isaac, per scale (one thread: the paper's one CPU core). K-FAC at width
# 6400 is not timed: it factorises and solves with eight 6400×6400 matrices per step (by a flop count,
# minutes per step on one core; the paper gives no K-FAC time for this width either).
TABLE2 = {
    "ci": {"models": DEFAULT_MODELS, "methods": METHODS, "skip": {}, "repeats": 15, "warmup": 2,
           "budget_s": 3.0, "threads": 1},
    "paper": {"models": ["mlp 5x100", "mlp 5x400", "mlp 5x1600", "mlp 5x6400", "auto-encoder"],
              "methods": METHODS, "skip": {"mlp 5x6400": ["kfac"]}, "repeats": 100, "warmup": 5,
              "budget_s": 60.0, "threads": 1},
}
# The paper's Table 2: (CPU seconds per epoch on one core, peak MB) per model and method; None where
# the cell could not be read reliably from the PDF text or is not given. The one copy of these numbers
# (the notebook 01_isaac reads it from here).
PAPER_TABLE2 = {
    "mlp 5x100": {"gradient": (2.05, 1.0), "kfac": (62.78, 11.5), "zeta": (8.65, 1.6), "isaac": (3.34, 1.0)},
    "mlp 5x400": {"gradient": (23.74, 4.8), "kfac": (218.48, 22.4), "zeta": (38.67, 7.7), "isaac": (None, 4.9)},
    "mlp 5x1600": {"gradient": (187.87, 51.0), "kfac": (6985.48, 212.2), "zeta": (665.80, 85.8),
                   "isaac": (None, 51.4)},
    "mlp 5x6400": {"gradient": (3439.59, 691.0), "kfac": (None, 3155.3), "zeta": (9673.0, 1197.8),
                   "isaac": (3451.61, 692.5)},
    "auto-encoder": {"gradient": (78.61, 16.2), "kfac": (1207.58, 70.7), "zeta": (193.25, 33.8),
                     "isaac": (87.39, 16.5)},
}


def paper_ratio(model: str, method: str, column: int = 0) -> float | None:
    """The paper's Table 2 ratio to the gradient (column 0: CPU time, 1: peak memory), or None."""
    if method not in PAPER_TABLE2[model]:                  # e.g. the PyPI package: not in the paper
        return None
    value, base = PAPER_TABLE2[model][method][column], PAPER_TABLE2[model]["gradient"][column]
    return value / base if value else None


TARGET = {"model": "mlp 5x400", "time": 1.15, "memory": 1.05, "pypi": 1.0}
PEER = {}                          # "isaac": the PyPI package, imported by load_peer()


def load_peer(path: str | None):
    """Import the PyPI ``isaac`` package from ``path`` (or the environment); None if absent."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import isaac as peer
    except ImportError:
        return None
    PEER["isaac"] = peer
    return peer


def _swap_to_peer(model: torch.nn.Module) -> None:
    """Every nn.Linear of ``model`` -> the peer's isaac.Linear holding the same parameters."""
    peer = PEER["isaac"]
    for parent in list(model.modules()):
        for key, child in list(parent._modules.items()):
            if type(child) is torch.nn.Linear:
                new = peer.Linear(child.in_features, child.out_features, LA, bias=child.bias is not None)
                new.weight, new.bias = child.weight, child.bias
                setattr(parent, key, new)


def _floor_weight_gradient(G, A, la, form="auto"):
    """ζ*'s arithmetic without its solve: (K G)ᵀ A with K = I + A Aᵀ/(b·la) (the ``floor`` row)."""
    b = A.shape[0]
    K = torch.addmm(identity(b, A.dtype, A.device), A, A.T, alpha=1.0 / (b * la))
    return (K @ G).T @ A


class Runner:
    """One method on its own copy of the model: ``step()`` is a full SGD step on the next batch."""

    def __init__(self, method: str, model: torch.nn.Module, loss: str, batches):
        self.method, self.model, self.loss, self.batches = method, model, loss, batches
        self.i = 0
        n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
        layers = range(1, n_linear + 1)
        self.pre = None
        if method in ("isaac", "floor"):
            apply_isaac(model, LA, layers)
        elif method == "pypi":
            _swap_to_peer(model)
        elif method in ("zeta", "kfac"):
            self.pre = KroneckerPreconditioner(model, LA, LG, layers, method=method, loss=loss,
                                               generator=torch.Generator().manual_seed(0))
        self.opt = torch.optim.SGD(model.parameters(), lr=LR[method])

    def zero_grad(self):
        self.opt.zero_grad(set_to_none=True)

    def step(self):
        self.zero_grad()
        if self.method == "floor":
            with unittest.mock.patch.object(curvlab.isaac, "_weight_gradient", _floor_weight_gradient):
                self._forward_backward_update()
        else:
            self._forward_backward_update()

    def _forward_backward_update(self):
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        out = self.model(x)
        loss = F.cross_entropy(out, y) if self.loss == "cross_entropy" else F.mse_loss(out, y)
        if self.pre is None:
            loss.backward()
        else:
            self.pre.backward(loss, out)
        self.opt.step()

    def held_bytes(self) -> int:
        """Bytes live before a step: parameters, optimizer state and the current batch."""
        tensors = list(self.model.parameters()) + list(self.batches[self.i % len(self.batches)])
        tensors += [t for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def peak_bytes(self) -> int:
        self.zero_grad()                          # gradients are allocated inside the profiled step
        gc.collect()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            self._forward_backward_update()       # its temporaries are freed inside the profile
        self.i -= 1
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
        live = peak = 0
        for _, nbytes in events:
            live += nbytes
            peak = max(peak, live)
        return self.held_bytes() + peak


def make_batches(model_name: str, n: int, generator: torch.Generator):
    if model_name == "auto-encoder":
        xs = [torch.rand(BATCH, 784, generator=generator) for _ in range(n)]
        return "mse", [(x, x) for x in xs]
    return "cross_entropy", [(torch.rand(BATCH, 784, generator=generator),
                              torch.randint(0, 10, (BATCH,), generator=generator)) for _ in range(n)]


def bench_model(name: str, methods: list[str], repeats: int, warmup: int, budget: float) -> dict:
    torch.manual_seed(0)
    base = MODELS[name]()
    loss, batches = make_batches(name, 8, torch.Generator().manual_seed(1))
    runners = [Runner(m, copy.deepcopy(base), loss, batches) for m in ["gradient", *methods]]
    times = {r.method: [] for r in runners}
    warm_start = time.perf_counter()
    for _ in range(warmup):
        start = time.perf_counter()
        for r in runners:
            r.step()
        round_s = time.perf_counter() - start
        if time.perf_counter() - warm_start > budget / 2:       # very slow rows: warm up less
            break
    repeats = max(5, min(repeats, int(budget / round_s)))       # slow K-FAC rows get fewer
    for k in range(repeats):
        for r in runners[k % len(runners):] + runners[:k % len(runners)]:
            start = time.perf_counter()
            r.step()
            times[r.method].append(time.perf_counter() - start)
    with quiet_stderr():                                        # the profiler logs to fd 2
        peaks = {r.method: r.peak_bytes() for r in runners}
    for r in runners:
        if r.pre is not None:
            r.pre.remove()
    base_time, base_peak = statistics.median(times["gradient"]), peaks["gradient"]
    return {"repeats": repeats} | {
        m: {"time_ms": 1e3 * statistics.median(times[m]),
            "time_ratio": statistics.median(times[m]) / base_time,
            "peak_mb": peaks[m] / 2**20, "memory_ratio": peaks[m] / base_peak,
            "paper_time_ratio": paper_ratio(name, m)} for m in times}


def _table2_train(cfg: dict, ctx) -> dict:
    """experiment.run body: Table 2 at the settings ``cfg`` (see ``TABLE2``), on cfg["threads"]."""
    saved = torch.get_num_threads()
    torch.set_num_threads(cfg["threads"])
    try:
        rows = {}
        for name in cfg["models"]:
            methods = [m for m in cfg["methods"] if m not in cfg["skip"].get(name, [])]
            if experiment.progress_enabled():                   # quiet in notebooks run headless
                print(f"  {name}: {', '.join(['gradient', *methods])}", flush=True)
            rows[name] = bench_model(name, methods, cfg["repeats"], cfg["warmup"], cfg["budget_s"])
    finally:
        torch.set_num_threads(saved)
    return {"metrics": rows, "summary": {"threads": cfg["threads"], "cpu": experiment.cpu_name()}}


def table2_record(scale: str, force: bool = False) -> dict:
    """The notebook's Table 2 record at ``scale``: measured now, or read from its cached record."""
    cfg = {"table": "table 2", "batch": BATCH, "la": LA, "lg": LG, "device": "cpu", **TABLE2[scale]}
    return experiment.run(_table2_train, cfg, notebook="01_isaac", scale=scale, name="table2",
                          force=force, device="cpu")


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (C++ log lines) for the duration."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, small time budget")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts, one run each (paper: one core)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per method (default 100, --quick 15)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed steps per model, lowering repeats (min 5) for slow "
                             "rows (default 60, --quick 8)")
    parser.add_argument("--methods", nargs="+", default=["isaac", "pypi", "zeta", "kfac"],
                        choices=["isaac", "pypi", "zeta", "kfac", "floor"],
                        help="floor (not default): zeta*'s matrix products without its solve")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--record", choices=list(TABLE2), default=None,
                        help="write the notebook's Table 2 record at this scale instead (see TABLE2)")
    parser.add_argument("--force", action="store_true", help="with --record: re-measure a cached record")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "isaac.json")
    parser.add_argument("--peers", default=str(ROOT / ".peers"),
                        help="folder holding the PyPI isaac package (pip install --target)")
    args = parser.parse_args(argv)
    if args.record:
        record = table2_record(args.record, force=args.force)
        print(f"Table 2 record at {args.record} scale ({record['environment']['device_name']}, "
              f"{record['config']['threads']} thread): {experiment.record_path(record['config'], '01_isaac', args.record, 'table2')}")
        return record
    methods = list(args.methods)
    if "pypi" in methods and load_peer(args.peers) is None:
        print(f"PyPI isaac not found in {args.peers} (make bench installs it): pypi column skipped")
        methods.remove("pypi")
    repeats = args.repeats or (15 if args.quick else 100)
    warmup = 2 if args.quick else 5
    budget = args.budget or (8.0 if args.quick else 60.0)
    runs = {threads: _report(args, threads, methods, repeats, warmup, budget) for threads in args.threads}
    record = {"benchmark": "isaac", "batch": BATCH, "repeats": repeats, "quick": args.quick, "la": LA,
              "lg": LG, "torch": torch.__version__, "cpu": experiment.cpu_name(), "target": TARGET,
              "target_met": all(r["target_met"] is not False for r in runs.values()),
              "runs": {str(t): r for t, r in runs.items()}}
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return record


def _report(args, threads: int, methods: list[str], repeats: int, warmup: int, budget: float) -> dict:
    """Table 2 at ``threads`` torch threads, printed; returns {"results", "target_met"}."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        print(f"ISAAC Table 2 cost, batch {BATCH}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}, up to {repeats} repeats (median), la = lg = {LA}")
        results = {name: bench_model(name, methods, repeats, warmup, budget) for name in args.models}
    finally:
        torch.set_num_threads(saved)
    labels = {"isaac": "zeta*", "pypi": "pypi", "zeta": "zeta", "kfac": "K-FAC", "floor": "floor"}
    header = f"{'model':<13} {'n':>3} {'gradient':>12}" + "".join(
        f" | {labels[m] + ' time':>11} {'(paper)':>7} {'memory':>6}" for m in methods)
    print(header + "\n" + "-" * len(header))
    for name, row in results.items():
        line = f"{name:<13} {row['repeats']:3d} {row['gradient']['time_ms']:9.2f} ms"
        for m in methods:
            paper = row[m]["paper_time_ratio"] if m != "pypi" else None
            line += (f" | {row[m]['time_ratio']:10.2f}x {f'{paper:.2f}x' if paper else '?':>7}"
                     f" {row[m]['memory_ratio']:5.2f}x")
        print(line)
        if "isaac" in row and "pypi" in row:
            row["isaac"]["ratio_to_pypi"] = row["isaac"]["time_ms"] / row["pypi"]["time_ms"]
            print(f"{'':<13}     zeta* / pypi (PyPI isaac 0.1.1, same rounds): "
                  f"{row['isaac']['ratio_to_pypi']:.2f}x")
    print("n: timed steps per method; time: median step time / gradient's; memory: peak bytes / gradient's "
          "(gradient peaks: " + ", ".join(f"{n} {r['gradient']['peak_mb']:.1f} MB"
                                            for n, r in results.items()) + ")")
    verdict = None
    if TARGET["model"] in results and "isaac" in results[TARGET["model"]]:
        got = results[TARGET["model"]]["isaac"]
        verdict = got["time_ratio"] <= TARGET["time"] and got["memory_ratio"] <= TARGET["memory"]
        pypi = got.get("ratio_to_pypi")
        if pypi is not None:
            verdict = verdict and pypi <= TARGET["pypi"]
        print(f"target for {TARGET['model']} at {threads} thread(s): zeta* <= {TARGET['time']}x time, "
              f"<= {TARGET['memory']}x memory, <= {TARGET['pypi']}x PyPI isaac: {got['time_ratio']:.2f}x, "
              f"{got['memory_ratio']:.3f}x, " + (f"{pypi:.2f}x" if pypi is not None else "n/a")
              + f" -> {'met' if verdict else 'NOT met'}")
    return {"threads": threads, "results": results, "target_met": verdict}


if __name__ == "__main__":
    main()
