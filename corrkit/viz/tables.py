"""Readable terminal tables for results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def apcr_table(result, top_k: int = 10) -> None:
    sets = result.controlling_set(min(top_k, len(result.directions)))
    t = Table(title=f"Top {sets.shape[1]} directions per class by APCR "
                    f"({result.points:,} points, {result.seconds:.1f} s, {result.provider})")
    t.add_column("class"); t.add_column("n", justify="right"); t.add_column("directions (APCR)")
    for j, name in enumerate(result.classes):
        t.add_row(name, str(result.counts[j]),
                  "  ".join(f"{i} ({result.apcr[i, j]:.2f})" for i in sets[j]))
    Console().print(t)
    fid = result.params.get("fidelity")
    if fid:
        ov = [k for k in fid if k.startswith("top")][0]
        Console().print(f"{result.params['mode']} fidelity vs fp32 ({fid['codes_per_class']} codes/class): "
                        f"max |dAPCR| {fid['max_abs_delta_apcr']:.4f}, {ov} per class {fid[ov]}")
