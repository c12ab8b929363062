"""The evaluation clock the notebooks' run functions share.

A run's time axis is the training clock (``training.fit(time_evaluation=False)``); evaluation is
timed apart by wrapping the evaluation function: :class:`EvalClock` records the cumulative seconds
spent evaluating after each call (``log``, one entry per evaluation) and in total (``total``).
"""
from __future__ import annotations

import time
from typing import Callable


class EvalClock:
    """``evaluate()`` wrapped so that its wall-clock seconds accumulate apart from training.

    >>> clock = EvalClock(lambda: {"loss": 1.0})
    >>> clock()["loss"], len(clock.log), clock.total >= 0.0
    (1.0, 1, True)
    """

    def __init__(self, evaluate: Callable[[], dict]):
        self.evaluate = evaluate
        self.total = 0.0
        self.log: list[float] = []

    def __call__(self) -> dict:
        t0 = time.perf_counter()
        res = self.evaluate()
        self.total += time.perf_counter() - t0
        self.log.append(self.total)
        return res
