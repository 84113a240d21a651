"""``--samples-per-class auto``: add codes in rounds until the top-k is sure (SPEC §11, issue 18).

A top-``k`` ranking from ``n`` codes per class is only as real as its members' inclusion
probabilities (the share of bootstrap resamples of the class's codes in which each stays in
the top ``k``). Round ``r`` runs :func:`corrkit.methods.sequential.apcr` with ``n_r`` codes
per class, ``n_0`` the default 32 and ``n_{r+1} = 2 n_r``, until every top-``k`` member of
every class with codes has inclusion ``>= target`` (default 0.9), or ``n`` reaches ``cap``.

**Choice: whole reruns, not appended codes.** Class sets are the first ``n`` qualifying codes
in draw order (SPEC §1), so round ``r + 1``'s codes extend round ``r``'s; rerunning them all
costs at most twice the last round (the rounds' sizes double) and makes the result exactly
the run ``--samples-per-class n_final`` would give, bit for bit, so it can be reproduced and
resumed like any run. The rounds and where each class first passed are kept in
``params["auto"]``.
"""

from __future__ import annotations

import time

import numpy as np

from corrkit._core import defaults
from corrkit._core.execution import Execution
from corrkit._core.grid import check_real, check_whole

TARGET = 0.9  # the bar: every top-k member stays in the top k in 9 of 10 resamples
CAP = 256  # codes per class at most: 8x the default run, about 12 min on the built-in bundle on 2 cores


def apcr_auto(bundle=None, *, start: int = defaults.SAMPLES_PER_CLASS, cap: int = CAP, target: float = TARGET,
              top: int = defaults.TOP_K, execution: Execution | None = None, out=None, progress=None, **kw):
    """:func:`~corrkit.methods.sequential.apcr` with codes added in rounds until the top-``top`` is sure.

    Parameters
    ----------
    start, cap : int
        Codes per class of the first round, and the most any round uses.
    target : float
        Inclusion probability every top-``top`` member of every class must reach.
    kw :
        Everything else :func:`~corrkit.methods.sequential.apcr` takes (not ``samples_per_class``).

    Returns
    -------
    APCRResult
        The last round's run, with ``params["auto"]``: ``rounds`` (codes per class, each class's
        smallest top-``top`` inclusion, how many of all classes' top-``top`` members reached
        ``target``, seconds), ``needed`` (per class the first ``n`` at which it passed, ``None`` if
        it never did), ``stopped`` (why) and ``seconds`` (all rounds).
    """
    from corrkit._core.bundle import as_bundle
    from corrkit.methods.sequential import apcr

    cap = check_whole(cap, "--max-samples-per-class", 1)
    start = min(check_whole(start, "--samples-per-class", 1), cap)
    target = check_real(target, "auto target", 0, 1)
    ex = execution or Execution()
    bundle = as_bundle(bundle)
    engine = kw.pop("engine", None)
    if engine is None and ex.executor != "ray":
        engine = ex.engine(bundle)  # one warm engine for every round
    rounds, needed = [], {name: None for name in bundle.classes}
    n, t0, prev = start, time.perf_counter(), None
    while True:
        run = apcr(bundle, samples_per_class=n, execution=ex, engine=engine, out=out, progress=progress, **kw)
        k = min(int(top), len(run.directions))
        inclusion = run.intervals(k)["inclusion"]  # [C, k]; NaN rows: classes with fewer than two codes
        worst = [None if not np.isfinite(row).all() else float(row.min()) for row in inclusion]
        for name, w in zip(run.classes, worst):
            if needed[name] is None and w is not None and w >= target:
                needed[name] = n
        rounds.append({"samples_per_class": n, "min_inclusion": [None if w is None else round(w, 3) for w in worst],
                       "members_sure": int((np.nan_to_num(inclusion, nan=0.0) >= target).sum()),
                       "members": int(k * (run.counts > 0).sum()), "seconds": round(run.seconds, 3)})
        failing = [j for j, (w, c) in enumerate(zip(worst, run.counts)) if c > 0 and (w is None or w < target)]
        if not failing:
            stopped = f"every top-{k} member's inclusion probability >= {target:g}"
            break
        if prev is not None and all(run.counts[j] == prev[j] for j in failing):
            stopped = "the classes still short of the target could not get more codes (the prior rarely gives them)"
            break
        prev = run.counts.copy()
        if n >= cap:
            stopped = f"the cap of {cap} codes per class was reached"
            break
        n = min(2 * n, cap)
    run.params["auto"] = {"target": target, "top": k, "start": start, "cap": cap, "rounds": rounds,
                          "needed": needed, "stopped": stopped, "seconds": round(time.perf_counter() - t0, 3)}
    if out is not None:
        run.save(out)
    return run
