"""SGN cost: GGN-vector products and SGN iterations as ratios to a gradient / SGD step.

Models (batch 1000, cross-entropy): the SGN MNIST MLP 784-20-20-20-10 (sigmoid, reference N(0, 1)
init) and the LeNet of the SGN Fashion runs (``models.sgn_arch_1()``). Data: synthetic and learnable
(uniform [0, 1] pixels, labels from a random linear teacher); SGN steps cycle through 8 batches.

Rows, all measured interleaved in one process (the order rotated every repeat; median reported):
  gradient             zero_grad + forward + loss + backward (the unit for GGN products)
  sgd step             gradient + ``torch.optim.SGD.step`` (the unit for SGN iterations)
  sgd step [fast ce]   the same with ``curvature.loss_function("cross_entropy")``, whose log-softmax
                       avoids torch's slow CPU path for fewer than 16 classes (which SGN's own loss
                       evaluations also avoid); SGN is reported against this step too, so that none of
                       its advantage comes from the baseline paying that slow path
  ggn standalone       ``curvature.ggn_vector_product``: one product from scratch
  ggn reuse [method]   one product ``op(v)`` with the linearisation ``GGNOperator(method=...)`` reused,
                       for each method: traced (default), jvp (torch.func.jvp per product),
                       double_backward (J v by differentiating u -> J^T u)
  setup [method]       building ``GGNOperator`` (outputs, loss) and its gradient g = J^T dL/df
  torch.func.linearize one product through ``torch.func.linearize``'s jvp function (its trace, paid at
                       every new point, is reported separately)
  curvlinops           ``GGNLinearOperator @ v`` if curvlinops imports (never a project dependency)
  sgn(k) [method]      one ``SGN.step`` with exactly k CG iterations (trust region and line search on)

Targets: standalone product <= 1.5x gradient; reused product <= 1.0x gradient (default method);
SGN(k) iteration <= (1.5 + 1.0 k)x SGD step. SGN rows include the line search's extra forward passes
(their mean number per step is reported).

Large CPU tensors are freed to the OS and page-faulted in afresh at every allocation under glibc's
default malloc settings; on small VMs this costs up to half the run time and makes timings very noisy.
By default the script re-executes itself with malloc settings that keep freed memory
(``--malloc default`` measures the environment as it is).

    python benchmarks/sgn.py [--quick] [--threads 2] [--repeats N] [--out results/bench/sgn.json]
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
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from curvlab import curvature as cv
from curvlab import models
from curvlab.experiment import atomic_write_json, cpu_name
from curvlab.sgn import SGN, sgn_reference_init

BATCH = 1000
N_BATCHES = 8
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                "MALLOC_TOP_PAD_": "536870912"}
KS = (1, 3, 10)
TARGETS = {"standalone": 1.5, "reuse": 1.0, "sgn_fixed": 1.5, "sgn_per_cg": 1.0}
MODELS = {
    "mlp 784-20-20-20-10": (lambda: sgn_reference_init(models.mlp([784, 20, 20, 20, 10], "sigmoid")),
                            (784,)),
    "lenet (sgn_arch_1)": (lambda: models.sgn_arch_1(), (1, 28, 28)),
}


def load_curvlinops(path: str | None):
    """Curvlinops' GGNLinearOperator, or (None, reason)."""
    if path and os.path.isdir(path) and path not in sys.path:
        sys.path.append(path)
    try:
        from curvlinops import GGNLinearOperator
        return GGNLinearOperator, None
    except Exception as err:                                   # not installed, or a missing dependency
        return None, f"{type(err).__name__}: {err}"


def timed_rows(rows: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each row, interleaved, the order rotated every repeat."""
    names = list(rows)
    for _ in range(warmup):
        for name in names:
            rows[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            start = time.perf_counter()
            rows[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_model(name: str, repeats: int, warmup: int, sgn_methods: list[str], curvlinops_cls) -> dict:
    build, in_shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    # a learnable synthetic task: pixel-like inputs, labels from a random linear teacher; SGN steps cycle
    # through N_BATCHES batches (as in training), the other rows use the first
    teacher = torch.randn(math.prod(in_shape), 10)
    batches = []
    for _ in range(N_BATCHES):
        xb = torch.rand(BATCH, *in_shape)
        batches.append((xb, (xb.reshape(BATCH, -1) - 0.5).matmul(teacher).argmax(1)))
    x, y = batches[0]
    v = [torch.randn_like(p) for p in model.parameters()]
    rows = {}

    # units: a gradient and an SGD step (separate copies so updates do not interfere)
    grad_model = copy.deepcopy(model)

    # rows that stand for training steps cycle through the batches, as the SGN rows do
    calls = {"gradient": 0, "sgd": 0, "sgd_fast": 0, "standalone": 0}

    def next_batch(row: str):
        calls[row] += 1
        return batches[calls[row] % N_BATCHES]

    def gradient():
        xb, yb = next_batch("gradient")
        grad_model.zero_grad(set_to_none=True)
        F.cross_entropy(grad_model(xb), yb).backward()
    rows["gradient"] = gradient
    sgd_model = copy.deepcopy(model)
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=1e-3)

    def sgd_step():
        xb, yb = next_batch("sgd")
        sgd.zero_grad(set_to_none=True)
        F.cross_entropy(sgd_model(xb), yb).backward()
        sgd.step()
    rows["sgd step"] = sgd_step
    fast_model = copy.deepcopy(model)
    fast_sgd = torch.optim.SGD(fast_model.parameters(), lr=1e-3)
    fast_ce = cv.loss_function("cross_entropy")

    def sgd_step_fast_ce():
        xb, yb = next_batch("sgd_fast")
        fast_sgd.zero_grad(set_to_none=True)
        fast_ce(fast_model(xb), yb).backward()
        fast_sgd.step()
    rows["sgd step [fast ce]"] = sgd_step_fast_ce

    rows["ggn standalone"] = lambda: cv.ggn_vector_product(model, "cross_entropy", *next_batch("standalone"), v)
    for method in cv.METHODS:
        op = cv.GGNOperator(model, "cross_entropy", x, y, method=method)
        rows[f"ggn reuse [{method}]"] = (lambda op=op: op(v))
        rows[f"setup [{method}]"] = (lambda method=method: cv.GGNOperator(
            model, "cross_entropy", x, y, method=method).gradient)

    # torch.func.linearize: a jvp function traced at one point
    names, params = cv._resolve_params(model, None)
    f = cv.model_function(model, x, names)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)             # const-folding notices
        _, linear_jvp = torch.func.linearize(f, *params)
    linearize_trace_s = time.perf_counter() - start
    outputs, vjp_fn = torch.func.vjp(f, *params)
    hessian = cv.loss_derivatives("cross_entropy", outputs, y).hessian_product
    rows["torch.func.linearize"] = lambda: vjp_fn(hessian(linear_jvp(*v)))

    if curvlinops_cls is not None:
        try:
            cl_op = curvlinops_cls(model, torch.nn.CrossEntropyLoss(), [p for p in model.parameters()],
                                   [(x, y)], check_deterministic=False)
            reference = cv.ggn_vector_product(model, "cross_entropy", x, y, v)
            got = cl_op @ [t.clone() for t in v]
            err = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(got, reference))
            print(f"  curvlinops agrees with ggn_vector_product to {err:.1e} (relative)")
            rows["curvlinops"] = lambda: cl_op @ v
        except Exception as err:                               # API drift: report, do not fail
            print(f"  curvlinops failed: {type(err).__name__}: {err}")

    sgn_stats: dict[str, list] = {}
    for method in sgn_methods:
        for k in KS:
            opt = SGN(copy.deepcopy(model), "cross_entropy", cg_max_iter=k, cg_warmup_steps=0, cg_tol=0.0,
                      method=method)
            key = f"sgn({k}) [{method}]"
            sgn_stats[key] = []
            rows[key] = (lambda opt=opt, key=key: sgn_stats[key].append(
                opt.step(*batches[len(sgn_stats[key]) % N_BATCHES])))

    medians = timed_rows(rows, repeats, warmup)
    g, s = medians["gradient"], medians["sgd step"]
    result = {"parameters": models.count_parameters(model), "gradient_ms": 1e3 * g, "sgd_step_ms": 1e3 * s,
              "torch_func_linearize_trace_s": linearize_trace_s, "rows": {}}
    for row, t in medians.items():
        entry = {"time_ms": 1e3 * t, "ratio_to_gradient": t / g, "ratio_to_sgd_step": t / s}
        if row.startswith("sgn("):
            k = int(row[4:row.index(")")])
            st = sgn_stats[row]
            entry.update(k=k, target_ratio=TARGETS["sgn_fixed"] + TARGETS["sgn_per_cg"] * k,
                         ratio_to_sgd_step_fast_ce=t / medians["sgd step [fast ce]"],
                         mean_backtracks=statistics.mean(x.backtracks for x in st),
                         mean_cg_iterations=statistics.mean(x.cg_iterations for x in st))
        result["rows"][row] = entry
    # fitted cost per SGN iteration, in SGD steps: a + b k
    for method in sgn_methods:
        ks = list(KS)
        ratios = [result["rows"][f"sgn({k}) [{method}]"]["ratio_to_sgd_step"] for k in ks]
        mk, mr = statistics.mean(ks), statistics.mean(ratios)
        b = sum((k - mk) * (r - mr) for k, r in zip(ks, ratios)) / sum((k - mk) ** 2 for k in ks)
        result[f"sgn_fit [{method}]"] = {"fixed": mr - b * mk, "per_cg_iteration": b}
    default = cv.METHODS[0]
    result["targets"] = {
        f"standalone <= {TARGETS['standalone']}x gradient":
            result["rows"]["ggn standalone"]["ratio_to_gradient"] <= TARGETS["standalone"],
        f"reuse [{default}] <= {TARGETS['reuse']}x gradient":
            result["rows"][f"ggn reuse [{default}]"]["ratio_to_gradient"] <= TARGETS["reuse"],
    }
    for k in KS:
        key = f"sgn({k}) [{default}]"
        if key in result["rows"]:
            r = result["rows"][key]
            met = r["ratio_to_sgd_step"] <= r["target_ratio"]
            result["targets"][f"{key} <= {r['target_ratio']:.1f}x sgd step"] = met
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 25, --quick 7)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sgn-methods", nargs="+", default=["traced", "jvp"], choices=list(cv.METHODS))
    parser.add_argument("--peers", "--curvlinops-path", dest="curvlinops_path",
                        default=str(Path(__file__).resolve().parents[1] / ".peers"),
                        help="extra folder to look for curvlinops in (added to sys.path only if it exists)")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="tuned (default): re-run under glibc malloc settings that keep freed memory "
                             "(no mmap/trim of large blocks), so every large CPU tensor does not page-fault "
                             "afresh; default: the environment as it is (slower, much noisier)")
    parser.add_argument("--out", type=Path, default=Path("results/bench/sgn.json"))
    args = parser.parse_args(argv)
    if args.malloc == "tuned" and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = dict(os.environ, **TUNED_MALLOC)
        args_again = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *args_again], env)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (7 if args.quick else 25)
    warmup = 2
    curvlinops_cls, why = load_curvlinops(args.curvlinops_path)
    print(f"SGN cost, batch {BATCH}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{repeats} repeats (median), {cpu_name()}, malloc "
          f"{'tuned' if os.environ.get('MALLOC_MMAP_THRESHOLD_') else 'default'}")
    if curvlinops_cls is None:
        print(f"curvlinops not installed ({why}); skipping its row")

    results = {}
    for name in args.models:
        print(f"{name}: measuring ...", flush=True)
        results[name] = bench_model(name, repeats, warmup, args.sgn_methods, curvlinops_cls)

    for name, res in results.items():
        print(f"\n{name}  ({res['parameters']:,} params; gradient {res['gradient_ms']:.2f} ms, "
              f"SGD step {res['sgd_step_ms']:.2f} ms; torch.func.linearize trace "
              f"{res['torch_func_linearize_trace_s']:.2f} s per point)")
        header = f"  {'row':<28} {'ms':>9} {'x gradient':>11} {'x SGD step':>11} {'target':>8}"
        print(header + "\n  " + "-" * (len(header) - 2))
        for row, e in res["rows"].items():
            target = ""
            if row == "ggn standalone":
                target = f"<= {TARGETS['standalone']}"
            elif row == f"ggn reuse [{cv.METHODS[0]}]":
                target = f"<= {TARGETS['reuse']}"
            elif row.startswith("sgn("):
                target = f"<= {e['target_ratio']:.1f}"
            extra = (f"   ({e['ratio_to_sgd_step_fast_ce']:.2f}x SGD step [fast ce]; backtracks/step "
                     f"{e['mean_backtracks']:.2f})" if row.startswith("sgn(") else "")
            print(f"  {row:<28} {e['time_ms']:9.2f} {e['ratio_to_gradient']:10.2f}x {e['ratio_to_sgd_step']:10.2f}x"
                  f" {target:>8}{extra}")
        for key, fit in res.items():
            if key.startswith("sgn_fit"):
                print(f"  fitted SGN iteration {key[8:]}: {fit['fixed']:.2f} + {fit['per_cg_iteration']:.2f} k "
                      f"SGD steps (target 1.5 + 1.0 k)")
        for target, met in res["targets"].items():
            print(f"  target {target}: {'met' if met else 'NOT met'}")

    malloc = {k: os.environ[k] for k in TUNED_MALLOC if k in os.environ}
    record = {"benchmark": "sgn", "batch": BATCH, "threads": torch.get_num_threads(), "repeats": repeats,
              "quick": args.quick, "malloc_env": malloc or "default", "torch": torch.__version__,
              "python": platform.python_version(),
              "cpu": cpu_name(), "curvlinops": None if curvlinops_cls is None else "measured",
              "curvlinops_skip_reason": why, "targets": TARGETS, "results": results,
              "all_targets_met": all(all(r["targets"].values()) for r in results.values())}
    atomic_write_json(args.out, record)
    print(f"\nwrote {args.out}")
    return record


if __name__ == "__main__":
    main()
