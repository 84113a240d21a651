"""Z vs W vs W+ on the trained style-based bundle: where does the classifier's response concentrate?

    .venv/bin/python -m benchmarks.style_spaces [--bundle builtin:style] [--out FILE.json]

For each space, ``corrkit apcr`` over the space's coordinate axes (Z: the 64 axes of z; W: the 64
axes of w on every layer; W+: the 64 axes of w on one layer group at a time, ``--by-layer``), the
same code sets (drawn in Z, SPEC §12), ``steps`` 3 and a step length of one standard deviation of
the space's coordinates (Z: 1; W: the mean per-axis std of w over 4,096 mapped prior samples), so
the three are moved by comparable amounts. Per space and class: the share of the class's total
APCR (summed over the space's directions) held by its top 10 directions, and the median class
selectivity of the directions (SPEC §9: top-class over second-class APCR); for W+, each layer
group's share of every class's total APCR over all groups (which layers control which classes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPS = ((0, 1), (2, 3), (4, 5))  # 7 px; 14 px; 28 px (the official w layout, base 7)
SAMPLES_PER_CLASS = 32
TOP = 10


def top_share(apcr: np.ndarray, k: int = TOP) -> np.ndarray:
    """Per class: the sum of its ``k`` largest APCRs over the sum of all (NaN for an empty class)."""
    a = np.nan_to_num(apcr, nan=0.0)
    total = a.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sort(a, 0)[::-1][:k].sum(0) / total, np.nan)


def median_selectivity(apcr: np.ndarray) -> float:
    from corrkit.methods.compare import selectivity

    s = selectivity(apcr)
    return float(np.median(s[np.isfinite(s)]))


def measure(bundle_path: str, samples_per_class: int = SAMPLES_PER_CLASS, seed: int = 0) -> dict:
    from corrkit._core.bundle import load_bundle
    from corrkit._core.style import Space, space_directions
    from corrkit.methods.sequential import apcr

    b = load_bundle(bundle_path)
    st = b.style
    w = b.in_space(Space("w")).draw(np.random.default_rng(12345), 4096)
    w_std = float(w.std(0).mean())
    out = {"classes": list(b.classes), "w_axis_std": w_std, "samples_per_class": samples_per_class, "spaces": {}}
    runs = {"z": (b, None, 1.0), "w": (b.in_space(Space("w")), None, w_std),
            "w+": (b.in_space(Space("w+", 1.0, GROUPS, True)), None, w_std)}
    for name, (view, dirs, delta) in runs.items():
        d, norm = space_directions(view, dirs)
        r = apcr(view, directions=d, normalize_directions=norm, samples_per_class=samples_per_class, delta=delta,
                 seed=seed)
        if name != "w+":
            out["spaces"][name] = {"n_directions": int(r.apcr.shape[0]), "delta": delta,
                                   "top10_share": top_share(r.apcr).tolist(),
                                   "median_selectivity": median_selectivity(r.apcr)}
            continue
        k = st.w_dim
        per = r.apcr.reshape(len(GROUPS), k, -1)  # group-major rows (corrkit._core.style.lift)
        totals = np.nan_to_num(per, nan=0.0).sum(1)  # [groups, C]
        for g, group in enumerate(GROUPS):
            out["spaces"][f"w+ layers {group[0]}-{group[-1]}"] = {
                "n_directions": k, "delta": delta, "top10_share": top_share(per[g]).tolist(),
                "median_selectivity": median_selectivity(per[g]),
                "share_of_class_total": (totals[g] / totals.sum(0)).tolist()}
    return out


def table(res: dict) -> str:
    cls = res["classes"]
    lines = ["| space | directions | " + " | ".join(cls) + " | mean | median selectivity |",
             "|---|---:|" + "---:|" * (len(cls) + 2)]
    for name, r in res["spaces"].items():
        s = np.array(r["top10_share"], float)
        lines.append(f"| {name} | {r['n_directions']} | " + " | ".join(f"{v:.2f}" for v in s)
                     + f" | {np.nanmean(s):.2f} | {r['median_selectivity']:.2f} |")
    lines += ["", "Share of each class's total W+ APCR by layer group:", "",
              "| layer group | " + " | ".join(cls) + " |", "|---|" + "---:|" * len(cls)]
    for name, r in res["spaces"].items():
        if "share_of_class_total" in r:
            lines.append(f"| {name.split('layers ')[1]} | " + " | ".join(f"{v:.2f}" for v in r["share_of_class_total"])
                         + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="builtin:style")
    ap.add_argument("--samples-per-class", type=int, default=SAMPLES_PER_CLASS)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    res = measure(a.bundle, a.samples_per_class)
    print(table(res))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
