"""Readable terminal tables for results: the only library module that prints, for the ``cli/`` commands.

Each function takes a result (or its JSON-ready dict) and writes to stdout; the
methods return numbers and never print, so the same results serve ``--json``.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from corrkit._core.defaults import TOP_K

MISSING = "—"  # a number corrkit cannot stand behind (a class without codes) is shown as missing


def direction_labels(result) -> list[str]:
    """A label per direction row: its index, or ``i@L0-1`` for direction ``i`` on layer group 0-1 of a
    ``--by-layer`` run (rows group-major, SPEC §12)."""
    rec = (result.bundle_card or {}).get("style") or {}
    k = len(result.directions)
    groups = rec.get("layers") if rec.get("by_layer") else None
    if not groups or k % len(groups):
        return [str(i) for i in range(k)]
    per = k // len(groups)
    names = [f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups]
    return [f"{i % per}@L{names[i // per]}" for i in range(k)]


def apcr_table(result, top_k: int = TOP_K) -> None:
    """:class:`~corrkit.methods.sequential.APCRResult`: the top directions per class, and int8 fidelity if measured."""
    sets = result.controlling_set(min(top_k, len(result.directions)))
    t = Table(title=f"Top {sets.shape[1]} directions per class by APCR "
                    f"({result.points:,} points, {result.seconds:.1f} s, {result.provider})")
    t.add_column("class"); t.add_column("n", justify="right"); t.add_column("directions (APCR)")
    label = direction_labels(result)
    boot = result.intervals(sets.shape[1])
    for j, name in enumerate(result.classes):
        t.add_row(name, str(result.counts[j]), MISSING if result.counts[j] == 0 else
                  "  ".join(f"{label[i]} ({_with_interval(result.apcr[i, j], boot, i, j, r)})"
                            for r, i in enumerate(sets[j])))
    Console().print(t)
    if boot is not None:
        Console().print(f"[lo, hi]: 95% percentile-bootstrap interval of APCR over each class's codes; %: share of "
                        f"resamples in which the direction stays in the top {sets.shape[1]} (SPEC §11)", markup=False)
    auto = result.params.get("auto")
    if auto:
        needed = ", ".join(f"{c} {n if n is not None else MISSING}" for c, n in auto["needed"].items())
        steps = " -> ".join(f"{r['samples_per_class']} ({r['members_sure']}/{r['members']} sure)" if "members" in r
                            else str(r["samples_per_class"]) for r in auto["rounds"])
        Console().print(f"--samples-per-class auto: {steps} codes per class in {auto['seconds']:.0f} s; stopped: "
                        f"{auto['stopped']}. First n with every "
                        f"top-{auto['top']} inclusion >= {auto['target']:g}: {needed}", markup=False)
    fid = result.params.get("fidelity")
    if fid:
        Console().print(fidelity_text(result.params["mode"], fid), markup=False)


def fidelity_text(mode: str, fid: dict) -> str:
    """The fidelity line of a run (SPEC §10); ``—`` where nothing could be compared, and the codes fp32 moved."""
    ov = [k for k in fid if k.startswith("top")][0]
    d = fid["max_abs_delta_apcr"]
    per = ", ".join("—" if o is None else f"{o:g}" for o in fid[ov])
    n = fid.get("codes_compared")
    codes = f"{fid['codes_per_class']} codes/class" if n is None else f"{n} codes, <= {fid['codes_per_class']}/class"
    line = (f"{mode} fidelity vs fp32 ({codes}): max |dAPCR| "
            f"{'—' if d is None else f'{d:.4f}'}, {ov} per class [{per}]")
    moved = fid.get("reclassified")
    if moved and sum(moved):
        line += (f"; {sum(moved)} of the run's codes are not in their class under fp32 (per class {moved}), "
                 "left out of this comparison")
    return line


def interval_text(lo: float, hi: float, digits: int = 2) -> str:
    """``[lo, hi]`` of a 95% interval; an unbounded end (one code cannot bound a mean) is ``∞``."""
    ends = [f"{v:.{digits}f}" if np.isfinite(v) else "∞" for v in (lo, hi)]
    return f"[{ends[0]}, {ends[1]}]"


def _with_interval(value: float, boot, i: int, j: int, rank: int) -> str:
    """``0.41 [0.37, 0.46] 97%``: an APCR value, its interval and its top-k inclusion probability."""
    if boot is None:
        return f"{value:.2f}"
    p = boot["inclusion"][j, rank]
    return f"{value:.2f} {interval_text(boot['lo'][i, j], boot['hi'][i, j])} " + (
        f"{100 * p:.0f}%" if np.isfinite(p) else MISSING)


def control_table(result) -> None:
    """:class:`~corrkit.methods.control.ControlResult` in the paper's Table 1 layout: classes as columns."""
    from corrkit.methods.control import PAPER_TABLE1_K, PAPER_TABLE1_MEAN

    t = Table(title=f"Intersection ratio |C_seq ∩ C_opt| / k, k = {result.k}")
    t.add_column("")
    for name in result.classes:
        t.add_column(name, justify="right")
    t.add_column("mean", justify="right")
    t.add_row("corrkit", *[MISSING if not np.isfinite(r) else f"{r:.1f}" if result.k == PAPER_TABLE1_K else f"{r:.2f}"
                           for r in result.ratio], MISSING if result.mean is None else f"{result.mean:.2f}")
    if result.ratio_interval is not None:
        t.add_row("95% interval", *[MISSING if np.isnan(v[0]) else interval_text(*v, digits=1)
                                    for v in result.ratio_interval],
                  MISSING if result.mean_interval is None else interval_text(*result.mean_interval))
    if result.paper is not None:
        t.add_row("Li et al. Table 1", *[f"{r:.1f}" for r in result.paper], f"{PAPER_TABLE1_MEAN:.2f}")
    Console().print(t)


def manipulation_table(result) -> None:
    """:class:`~corrkit.methods.manipulate.ManipulationResult`: flip rate and drop of ``S_j`` per class and set."""
    from corrkit.methods.manipulate import SETS

    t = Table(title=f"Lowering S_j through {result.top_k} dims, alpha = {result.alpha:g}: flip rate (mean drop)")
    for col in ("class", "n", *SETS):
        t.add_column(col, justify="left" if col == "class" else "right")
    iv = result.flip_intervals

    def cell(rate, drop, where, s):
        span = (iv.get(where) or {}).get(s)
        return f"{rate:.2f} {interval_text(*span)} ({drop:.2f})" if span else f"{rate:.2f} ({drop:.2f})"

    for m in result.per_class:
        t.add_row(result.classes[m.j], str(len(m.base)), *[cell(m.flip_rate(s), m.drop(s), m.j, s) for s in SETS])
    if len(result.per_class) > 1:
        o = result.overall()
        t.add_row("all", str(sum(len(m.base) for m in result.per_class)),
                  *[cell(o['flip_rate'][s], o['drop'][s], "all", s) for s in SETS])
    Console().print(t)
    if iv:
        Console().print("[lo, hi]: 95% bootstrap interval of the flip rate over each class's codes (SPEC §11)",
                        markup=False)


def translation_table(result, n_pairs: int = 10) -> None:
    """:class:`~corrkit.methods.translate.TranslationResult`: the success matrix (rows: source, columns: target)
    and the easiest and hardest pairs."""
    names = result.classes
    t = Table(title=f"Translation success (share of Z_source classified as target), {result.top_k} dims, "
                    f"alpha = {result.alpha:g}")
    t.add_column("source \\ target")
    for n in names:
        t.add_column(n[:10], justify="right")
    for j, row in enumerate(result.success):
        t.add_row(names[j], *["·" if np.isnan(x) else f"{x:.2f}" for x in row])
    console = Console()
    console.print(t)
    ranked = result.ranked_pairs()
    off = ~np.eye(len(names), dtype=bool) & ~np.isnan(result.success)
    if off.any():
        span = f" {interval_text(*result.mean_interval, digits=3)}" if result.mean_interval else ""
        console.print(f"mean off the diagonal: {result.success[off].mean():.3f}{span} at alpha {result.alpha:g}, "
                      f"{result.success_any_alpha[off].mean():.3f} at some step up to it", markup=False)
    iv = result.success_interval

    def one(j, tgt, s):
        return f"{names[j]}→{names[tgt]} {s:.2f}" + (f" {interval_text(*iv[j, tgt])}" if iv is not None else "")

    if len(ranked) > 1:
        fmt = lambda ps: ", ".join(one(*p) for p in ps)  # noqa: E731
        console.print(f"easiest: {fmt(ranked[:n_pairs])}", markup=False)
        console.print(f"hardest: {fmt(ranked[::-1][:n_pairs])}", markup=False)
        if iv is not None:
            console.print("[lo, hi]: 95% bootstrap interval over the source class's codes (SPEC §11)", markup=False)


COMPARE_COLUMNS = ("strongest_apcr", "best_direction", "n_directions", "mean_strongest_apcr", "mean_selectivity",
                   "median_selectivity", "strongest_apcr_interval", "mean_strongest_apcr_interval", "apcr_seconds")


def compare_table(summary: dict) -> None:
    """What :func:`corrkit.methods.compare.compare` returned: one line per direction method.

    ``seconds`` is what finding the directions took, ``APCR s`` the method's APCR run. Extra
    numbers a direction file carried (e.g. ``rca``) go to the last column.
    """
    print(f"{'method':16s} {'K':>4s} {'mean strongest APCR [95%]':>27s} {'mean selectivity':>17s} {'seconds':>8s} "
          f"{'APCR s':>7s}  extra")
    for name, m in summary["methods"].items():
        extra = {k: v for k, v in m.items() if k not in COMPARE_COLUMNS and k != "seconds"}
        secs = f"{m['seconds']:8.2f}" if isinstance(m.get("seconds"), (int, float)) else f"{MISSING:>8s}"
        run_s = f"{m['apcr_seconds']:7.1f}" if isinstance(m.get("apcr_seconds"), (int, float)) else f"{MISSING:>7s}"
        iv = m.get("mean_strongest_apcr_interval")
        strongest = MISSING if m['mean_strongest_apcr'] is None else f"{m['mean_strongest_apcr']:.3f}" + (
            f" {interval_text(*iv, digits=3)}" if iv else "")
        print(f"{name:16s} {m['n_directions']:4d} {strongest:>27s} "
              f"{(m['mean_selectivity'] or float('nan')):17.2f} {secs} {run_s}  "
              + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()))
    paired = summary.get("paired")
    if paired:
        print(f"mean strongest APCR minus {paired['reference']}'s, 95% interval over the same resamples of the "
              "shared codes (an interval below 0: a real gap):")
        print("  " + ", ".join(f"{name} {d['difference']:+.3f} {interval_text(*d['interval'], digits=3)}"
                               for name, d in paired["methods"].items()))


PROBES = (("codes", "codes"), ("codes_shuffled_labels", "shuffled labels"), ("prior", "prior samples"))


def probe_table(result: dict) -> None:
    """What :func:`corrkit.methods.latent_space.latent_space` returned: one line per linear probe."""
    for key, name in PROBES:
        if key in result:
            r = result[key]
            print(f"linear probe, {name:16s} accuracy {r['accuracy']:.3f} ± {r['std']:.3f} "
                  f"(chance {r['chance']:.3f}, {r['n']} codes)")
