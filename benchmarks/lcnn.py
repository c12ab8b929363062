"""LCNN cost: each Table 1 training variant's step, and the curvature measurement, against a standard step.

Model: the reduced ResNet-18 of the ci scale (``curvlab.repro.lcnn.SETTINGS["ci"]``: width 1/8, one
basic block per stage), not the paper's full-width one: the skeleton of ``curvlab.lcnn.models.resnet18``
(the 1/sqrt(2) half-channel residual blocks, SN fc), 20 classes, float32, on the paper's input shape
3x32x32 at the paper's batch 128 (the ci runs themselves feed it 1x16x16 images). Data: synthetic
(uniform [0, 1] pixels, labels from a random linear teacher); timings do not depend on it.

Rows, measured interleaved in one process (the order rotated every repeat; median reported), each
one SGD step (momentum 0.9, weight decay 5e-4) of a training variant of Table 1:
  standard               variant "standard" (softplus beta = 1000, affine-free BN), cross-entropy
  lcnn                   variant "lcnn" (centred softplus, Lipschitz BN, conv spectral norm with one
                         power iteration per forward) + 1e-2 sum(beta) + 1e-2 sum|log gamma|, no decay
                         on log beta / log gamma (``parameter_groups``)
  gradient-norm          standard + the input-gradient-norm penalty (double backprop), strength
                         ``reference_strength(1e-3, 128)`` (the reference's constant at batch 128)
  lcnn + gradient-norm   both
  cure                   standard + the CURE-style finite-difference gradient penalty (the same strength)
  softplus + wd          variant "softplus_wd" (softplus beta = 10), cross-entropy
  adversarial (pgd-3)    standard; the step is taken on PGD-l2 examples (eps 0.1, 3 steps of 0.01:
                         the reference's adversarial-training attack)
and, in eval mode on the standard model (no step):
  input gradient         ``curvlab.hessian.input_gradient`` on the batch
  input hvp              ``curvlab.hessian.input_hessian_vector_product``: one per-sample input-Hessian
                         product for the whole batch (the unit of the measurement's cost)
  measure_curvature      ``curvlab.lcnn.measurement.measure_curvature`` with K = 10 power iterations and
                         tol 0 (all K + 1 products, no early stop: the cost's upper end)

Targets: lcnn step <= 1.3x a standard step (the paper's "marginally increased training time"). The
gradient-norm step is expected at 2-3x (double backprop) and 3-step adversarial training at about 4x;
those two are reported as expectations, not targets. The measurement's cost is reported in input-HVP
equivalents (the spec expects about K + 1).

Peak memory: the profiler's memory events (``profile_memory=True``) over one call, their running
maximum added to the bytes held before it (parameters, optimizer state, the batch), as in
``benchmarks/isaac.py``; scratch space that BLAS allocates itself is not counted.

Both the wall time and the CPU time of this process are recorded; ``--clock`` chooses which one the
ratios and targets use (wall by default). By default the script re-executes itself with glibc malloc
settings that keep freed memory (``--malloc default`` measures the environment as it is).

    python benchmarks/lcnn.py [--quick] [--threads 1 2] [--clock wall|cpu] [--repeats N]
        [--out results/bench/lcnn.json]
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from curvlab import hessian
from curvlab.experiment import atomic_write_json, cpu_name
from curvlab.lcnn import models as lcnn_models
from curvlab.lcnn import regularizers
from curvlab.lcnn.measurement import measure_curvature
from curvlab.lcnn.robustness import pgd_l2

BATCH = 128
CLASSES = 20
WIDTH = 0.125
BLOCKS = (1, 1, 1, 1)
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
REG_BETA = REG_GAMMA = 1e-2
PGD = {"eps": 0.1, "steps": 3, "step_size": 0.01}
POWER_ITERS = 10
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                "MALLOC_TOP_PAD_": "536870912"}
TARGETS = {"lcnn_vs_standard": 1.3}
EXPECTED = {"gradient-norm": (2.0, 3.0), "adversarial (pgd-3)": (3.0, 5.0)}
STEP_ROWS = ("standard", "lcnn", "gradient-norm", "lcnn + gradient-norm", "cure", "softplus + wd",
             "adversarial (pgd-3)")
EVAL_ROWS = ("input gradient", "input hvp", "measure_curvature")
VARIANT = {"standard": "standard", "lcnn": "lcnn", "gradient-norm": "standard",
           "lcnn + gradient-norm": "lcnn", "cure": "standard", "softplus + wd": "softplus_wd",
           "adversarial (pgd-3)": "standard"}


def model_description() -> str:
    return (f"ResNet-18 (curvlab.lcnn.models.resnet18) width {WIDTH}, blocks {list(BLOCKS)}, {CLASSES} classes, "
            f"3x32x32, batch {BATCH}, float32: the ci model's width and depth, not the paper's ResNet-18")


def build(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return lcnn_models.resnet18(CLASSES, variant=variant, width=WIDTH, in_channels=3, input_size=32,
                                blocks=BLOCKS)


def make_batches(n: int, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    teacher = torch.randn(3 * 32 * 32, CLASSES, generator=generator)
    out = []
    for _ in range(n):
        x = torch.rand(BATCH, 3, 32, 32, generator=generator)
        out.append((x, (x.reshape(BATCH, -1) - 0.5).matmul(teacher).argmax(1)))
    return out


def objective(row: str):
    """``(model, x, y) -> loss`` of one training variant."""
    gnorm = regularizers.reference_strength(1e-3, BATCH)
    if row in ("standard", "softplus + wd", "adversarial (pgd-3)"):
        return lambda model, x, y: F.cross_entropy(model(x), y)
    strengths = {"lcnn": dict(reg_beta=REG_BETA, reg_gamma=REG_GAMMA),
                 "gradient-norm": dict(reg_gnorm=gnorm),
                 "lcnn + gradient-norm": dict(reg_beta=REG_BETA, reg_gamma=REG_GAMMA, reg_gnorm=gnorm),
                 "cure": dict(reg_cure=gnorm)}[row]
    return lambda model, x, y: regularizers.regularized_loss(model, x, y, **strengths)[0]


class Step:
    """One training variant: its model, optimizer and batches; ``()`` takes one SGD step."""

    def __init__(self, row: str, batches):
        self.row, self.batches, self.i = row, batches, 0
        self.model = build(VARIANT[row]).train()
        groups = lcnn_models.parameter_groups(self.model, WEIGHT_DECAY)
        self.opt = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM)
        self.loss = objective(row)

    def __call__(self):
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        if self.row == "adversarial (pgd-3)":
            x = pgd_l2(self.model, x, y, PGD["eps"], steps=PGD["steps"], step_size=PGD["step_size"],
                       seed=self.i)
            self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model, x, y).backward()
        self.opt.step()

    def held_bytes(self) -> int:
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        tensors += list(self.batches[self.i % len(self.batches)])
        tensors += [t for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors)


class Measure:
    """An eval-mode computation on the standard model (no step): gradient, HVP or the curvature."""

    def __init__(self, row: str, model: torch.nn.Module, batch):
        self.row, self.model, (self.x, self.y) = row, model, batch
        self.v = torch.randn(self.x.shape, generator=torch.Generator().manual_seed(1))

    def __call__(self):
        if self.row == "input gradient":
            return hessian.input_gradient(self.model, "cross_entropy", self.x, self.y)
        if self.row == "input hvp":
            return hessian.input_hessian_vector_product(self.model, "cross_entropy", self.x, self.y, self.v)
        return measure_curvature(self.model, self.x, self.y, iters=POWER_ITERS, seed=0, tol=0.0)

    def held_bytes(self) -> int:
        tensors = list(self.model.parameters()) + list(self.model.buffers()) + [self.x, self.y, self.v]
        return sum(t.numel() * t.element_size() for t in tensors)


def peak_bytes(runner) -> int:
    """Bytes held before one call plus the running maximum of the allocations it makes."""
    if isinstance(runner, Step):
        runner.opt.zero_grad(set_to_none=True)        # gradients are allocated inside the profiled step
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        runner()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return runner.held_bytes() + peak


def timed_rows(rows: dict, repeats: int, warmup: int) -> dict[str, dict]:
    """Per row: median wall and CPU seconds per call; rows interleaved, the order rotated each repeat."""
    names = list(rows)
    for _ in range(warmup):
        for name in names:
            rows[name]()
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            rows[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name]),
                   "n": len(wall[name])} for name in names}


def bench(repeats: int, warmup: int, clock: str) -> dict:
    g = torch.Generator().manual_seed(0)
    batches = make_batches(4, g)
    rows = {row: Step(row, batches) for row in STEP_ROWS}
    eval_model = build("standard").eval()
    rows.update({row: Measure(row, eval_model, batches[0]) for row in EVAL_ROWS})
    check = measure_curvature(eval_model, *batches[0], iters=POWER_ITERS, seed=0)      # default tol 1e-3
    full = rows["measure_curvature"]()                                                 # the timed call, tol 0
    medians = timed_rows(rows, repeats, warmup)
    peaks = {row: peak_bytes(runner) for row, runner in rows.items()}
    other = "cpu" if clock == "wall" else "wall"
    base = medians["standard"]
    out = {"model": model_description(), "parameters": sum(p.numel() for p in rows["standard"].model.parameters()),
           "parameters_lcnn": sum(p.numel() for p in rows["lcnn"].model.parameters()),
           "clock": clock, "standard_step_ms": 1e3 * base[clock], "rows": {}}
    for row in rows:
        m = medians[row]
        entry = {"time_ms": 1e3 * m[clock], "wall_ms": 1e3 * m["wall"], "cpu_ms": 1e3 * m["cpu"], "n": m["n"],
                 "ratio_to_standard": m[clock] / base[clock], f"ratio_to_standard_{other}": m[other] / base[other],
                 "peak_mb": peaks[row] / 2**20, "memory_ratio": peaks[row] / peaks["standard"]}
        if row in EVAL_ROWS:
            entry["hvp_equivalents"] = m[clock] / medians["input hvp"][clock]
        out["rows"][row] = entry
    out["measurement"] = {"power_iterations": POWER_ITERS, "batch": BATCH, "tol": 0.0,
                          "hessian_products": int(full.iterations[0]),
                          "hvp_equivalents": out["rows"]["measure_curvature"]["hvp_equivalents"],
                          "converged_fraction_at_1e-3": check.summary()["converged_fraction"]}
    ratio = out["rows"]["lcnn"]["ratio_to_standard"]
    out["targets"] = {f"lcnn step <= {TARGETS['lcnn_vs_standard']:.1f}x standard step":
                      ratio <= TARGETS["lcnn_vs_standard"]}
    out["expected"] = {f"{row} step {lo:g}-{hi:g}x standard step": lo <= out["rows"][row]["ratio_to_standard"] <= hi
                       for row, (lo, hi) in EXPECTED.items()}
    return out


def report(res: dict) -> None:
    other = "cpu" if res["clock"] == "wall" else "wall"
    print(f"\n{res['model']}\n  ({res['parameters']:,} parameters standard, {res['parameters_lcnn']:,} lcnn; "
          f"standard step {res['standard_step_ms']:.1f} ms; ratios of {res['clock']} time)")
    header = (f"  {'row':<22} {'ms':>9} {'x standard':>11} {f'({other})':>7} {'HVPs':>6} {'peak MB':>8} "
              f"{'x memory':>9} {'n':>3}")
    print(header + "\n  " + "-" * (len(header) - 2))
    for row, e in res["rows"].items():
        hvps = f"{e['hvp_equivalents']:6.2f}" if "hvp_equivalents" in e else " " * 6
        print(f"  {row:<22} {e['time_ms']:9.1f} {e['ratio_to_standard']:10.2f}x "
              f"{e[f'ratio_to_standard_{other}']:6.2f}x {hvps} {e['peak_mb']:8.1f} {e['memory_ratio']:8.2f}x "
              f"{e['n']:3d}")
    m = res["measurement"]
    print(f"  measure_curvature, K = {m['power_iterations']}, batch {m['batch']}, {m['hessian_products']} products "
          f"(tol 0): {m['hvp_equivalents']:.2f} input-HVP equivalents per batch; "
          f"{m['converged_fraction_at_1e-3']:.0%} of the samples converged at tol 1e-3")
    for target, met in res["targets"].items():
        print(f"  target {target}: {'met' if met else 'NOT met'}")
    for what, inside in res["expected"].items():
        print(f"  expected {what}: {'inside' if inside else 'outside'}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="torch thread counts (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 11, --quick 3)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="the time the ratios and targets use: wall (default) or CPU time of this process")
    parser.add_argument("--peers", default=None, help="accepted for make bench; not used")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="tuned (default): re-run under glibc malloc settings that keep freed memory; "
                             "default: the environment as it is")
    parser.add_argument("--out", type=Path, default=Path("results/bench/lcnn.json"))
    args = parser.parse_args(argv)
    if args.malloc == "tuned" and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = dict(os.environ, **TUNED_MALLOC)
        args_again = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *args_again], env)
    repeats = args.repeats or (3 if args.quick else 11)
    warmup = 1 if args.quick else 2
    by_threads = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"LCNN step and measurement cost, batch {BATCH}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}, {repeats} repeats (median), {cpu_name()}, malloc "
              f"{'tuned' if os.environ.get('MALLOC_MMAP_THRESHOLD_') else 'default'}", flush=True)
        by_threads[str(threads)] = bench(repeats, warmup, args.clock)
        report(by_threads[str(threads)])
    primary = 2 if 2 in args.threads else args.threads[0]
    malloc = {k: os.environ[k] for k in TUNED_MALLOC if k in os.environ}
    record = {"benchmark": "lcnn", "batch": BATCH, "threads": primary, "clock": args.clock, "repeats": repeats,
              "quick": args.quick, "malloc_env": malloc or "default", "torch": torch.__version__,
              "python": platform.python_version(), "cpu": cpu_name(), "targets": TARGETS,
              "expected": {k: list(v) for k, v in EXPECTED.items()}, "results": by_threads[str(primary)],
              "by_threads": by_threads,
              "all_targets_met": all(all(r["targets"].values()) for r in by_threads.values())}
    atomic_write_json(args.out, record)
    print(f"\nwrote {args.out}")
    return record


if __name__ == "__main__":
    main()
