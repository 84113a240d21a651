"""The scale suite: corrkit against PyTorch eager on the DCGANs users bring, at 64, 128 and 256 px, in one run.

    .venv/bin/python -m benchmarks.scale_suite [--sizes 64 128 256 style256] [--modes fp32 bf16 int8] [--rounds 3]
        [--out FILE.json]

For each model (:mod:`benchmarks.scale_models`: ConvTranspose + BatchNorm DCGANs at 64, 128
and 256 px, strided-conv classifier, exported with ``torch.onnx.export``'s defaults; and
``style256``: the 256-px StyleGAN2-architecture generator of ``tests/stylegan2.py`` with the
channels of :data:`benchmarks.style_bench.CHANNELS`, analysed in W+), one after another in
this process and on the same codes:

- onnxruntime raw sessions of the two models as exported (the user's own loop);
- the corrkit engine in each mode (batch 32, the rewrites it applies);
- ``corrkit apcr`` end to end in each mode, each in a fresh child process so its peak RSS
  is its own: an 80-code, 32-direction, 2-step grid, the batch size corrkit chooses
  (recorded), and for the fast modes the fidelity every run prints (SPEC §10);
- PyTorch eager on the same torch modules: fp32 NCHW, fp32 channels-last, bf16 autocast
  channels-last (the images converted to channels-last before the classifier), each the best
  of its calls on one batch of 32;
- PyTorch eager fp32 and bf16 channels-last on the fp32 run's whole grid, sustained as
  ``corrkit apcr`` is (:func:`torch_grid`; DCGANs only), with bf16's own fidelity against
  corrkit's fp32 APCR; the bf16 grid is skipped where bf16 runs at under a quarter of fp32's
  rate (a CPU without native bf16, where it would take an hour a size).

Prints a Markdown table (points/s and ratios to PyTorch fp32 and bf16 channels-last).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import queue
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 32
DIRECTIONS = 32
CODES = 8  # per class: 80 codes x 32 directions x 4 off-centre steps = 10,240 grid points per run
STYLE_CODES = 2  # per class on style256 (20 codes, 2,560 points: it runs ~25 points/s on 2 cores)
SECONDS = 3.0
EMULATED = 4  # PyTorch bf16 slower than its fp32 by this much: the CPU emulates bf16 (no whole-grid row)


def _best_rate(fn, rows: int, seconds: float = SECONDS) -> float:
    fn()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while True:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() > t_end:
            return rows / best


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: its own, unlike ru_maxrss, which a spawned child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _apcr_child(folder: str, mode: str, latents, q, space: str = "z", codes: int = CODES) -> None:
    from corrkit._core.bundle import load_bundle
    from corrkit._core.execution import Execution
    from corrkit._core.style import Space, space_directions
    from corrkit.methods.sequential import apcr

    b = load_bundle(folder)
    if space == "z":
        d, norm = np.eye(b.latent_dim, dtype=np.float32)[:DIRECTIONS], True
    else:  # the first W axes, lifted to every style layer
        b = b.in_space(Space(space))
        d, norm = space_directions(b, np.eye(b.style.w_dim, dtype=np.float32)[:DIRECTIONS])
    r = apcr(b, directions=d, normalize_directions=norm, samples_per_class=codes, steps=2, latents=latents,
             execution=Execution(device="cpu", mode=mode))
    q.put({"apcr": r.apcr, "latents": r.latents, "labels": r.labels, "delta": r.params["delta"],
           "points_per_second": r.points / r.seconds,
           "points": int(r.points), "seconds": r.seconds,
           "batch_size": r.params["batch_size"], "batch_size_source": r.params.get("batch_size_source"),
           "rewrites": r.params.get("rewrites"), "fidelity": r.params.get("fidelity"),
           "peak_rss_mb": _peak_rss_mb()})


def apcr_end_to_end(folder: str, mode: str, latents=None, space: str = "z", codes: int = CODES) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_apcr_child, args=(folder, mode, latents, q, space, codes))
    p.start()
    while True:  # a child that dies (an error, the OOM killer) must not leave the suite waiting forever
        try:
            out = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"apcr {mode} child exited with code {p.exitcode} before it reported")
    p.join()
    return out


def whole_grid_fidelity(a: np.ndarray, b: np.ndarray, k: int = 10) -> dict:
    """SPEC §10 on the whole suite grid: max |ΔAPCR| and the top-k overlap per class, fast run ``a`` vs fp32 ``b``."""
    ta = np.argsort(-np.nan_to_num(a, nan=-1), axis=0, kind="stable")[:k]
    tb = np.argsort(-np.nan_to_num(b, nan=-1), axis=0, kind="stable")[:k]
    overlap = [len(set(ta[:, j]) & set(tb[:, j])) / k for j in range(a.shape[1])]
    return {"max_abs_delta_apcr": float(np.nanmax(np.abs(a - b))), "top10_overlap": overlap,
            "min_top10_overlap": float(min(overlap))}


def torch_rows(generator, classifier, x: np.ndarray) -> dict[str, float]:
    """PyTorch eager on ``generator`` then ``classifier`` over the batch ``x``: fp32 NCHW, fp32 and bf16 channels-last.

    The images are made channels-last before the classifier; bf16 is autocast with the
    softmax in fp32. Points per second of the best call (:func:`_best_rate`).
    """
    import torch

    torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
    x = torch.from_numpy(x)
    out = {}
    for name, cl, bf16 in (("PyTorch eager fp32 NCHW", False, False),
                           ("PyTorch eager fp32 channels-last", True, False),
                           ("PyTorch eager bf16 channels-last", True, True)):
        fmt = torch.channels_last if cl else torch.contiguous_format
        gm, qm = generator.to(memory_format=fmt), classifier.to(memory_format=fmt)

        @torch.no_grad()
        def run(gm=gm, qm=qm, bf16=bf16, fmt=fmt):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return torch.softmax(qm(gm(x).contiguous(memory_format=fmt)).float(), 1)

        out[name] = _best_rate(run, len(x))
    return out


def torch_grid(generator, classifier, ref: dict, space: str, bf16: bool, batch: int = BATCH) -> dict:
    """PyTorch eager, channels-last, on the fp32 run's whole grid: the same codes, points and reduction, timed whole.

    The loop a user would write around the torch modules (grid points in batches of ``batch``,
    generator, classifier, softmax, the APCR sums), sustained over every point, as ``corrkit apcr``
    end to end is, rather than the best single call of :func:`torch_rows`. Returns points per
    second and the APCR (for its own fidelity against corrkit's fp32).
    """
    import torch

    from corrkit._core.grid import Grid
    from corrkit.kernels import apcr as kern

    torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
    fmt = torch.channels_last
    gm, qm = generator.to(memory_format=fmt), classifier.to(memory_format=fmt)
    latents, labels = ref["latents"], ref["labels"]
    n = latents.shape[1]
    d = np.eye(n, dtype=np.float32)[:DIRECTIONS]

    @torch.no_grad()
    def probs(z):
        x = torch.from_numpy(z).reshape(len(z), n, 1, 1) if space == "z" else torch.from_numpy(z)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.softmax(qm(gm(x).contiguous(memory_format=fmt)).float(), 1).numpy()

    probs(np.ascontiguousarray(latents[:batch]))  # warm, as corrkit's engine is warm before its clock starts
    t0 = time.perf_counter()
    base = np.concatenate([probs(latents[s:s + batch]) for s in range(0, len(latents), batch)])
    grid = Grid(latents, d, 2, float(ref["delta"]))
    sums = kern.new_sums(len(d), 2, base.shape[1], len(latents))
    for q0 in range(0, grid.n_points, batch):
        q1 = min(q0 + batch, grid.n_points)
        kern.accumulate(sums, probs(grid.points(q0, q1)), q0, base, labels, 2)
    seconds = time.perf_counter() - t0
    return {"points_per_second": (grid.n_points + len(latents)) / seconds,
            "apcr": kern.finalize(sums, base, labels, 2)["apcr"]}


def _model(name: str, work: Path):
    """``(bundle in its space, space, codes per class, torch generator, torch classifier, torch input batch)``."""
    rng = np.random.default_rng(0)
    if name == "style256":
        from benchmarks.style_bench import style_bundle

        b, gen, cls = style_bundle(work / name, n_classes=10)
        from corrkit._core.style import Space

        x = rng.standard_normal((BATCH, b.style.n_layers, b.style.w_dim)).astype(np.float32)
        return b.in_space(Space("w+")), "w+", STYLE_CODES, gen.synthesis, cls, x
    from benchmarks.scale_models import LATENT, bundle, models

    g, q = models(int(name))
    x = rng.standard_normal((BATCH, LATENT, 1, 1)).astype(np.float32)
    return bundle(int(name), work / f"dcgan{name}"), "z", CODES, g, q, x


def suite(sizes, modes, work: Path, rounds: int = 1) -> dict:
    from corrkit._core.bench import engine_call, raw_session

    results = {}
    for size in sizes:
        b, space, codes, gen, cls, x = _model(size, work)
        rows, info = {}, {}
        rows["onnxruntime raw sessions (as exported)"] = _best_rate(raw_session(b, BATCH), BATCH)
        for mode in modes:
            fn, e = engine_call(b, BATCH, device="cpu", mode=mode)
            rows[f"corrkit engine {mode}"] = _best_rate(fn, BATCH)
            info[f"engine {mode} rewrites"] = e.rewrites
        # exact fp32 against PyTorch fp32, `rounds` times in turn (the machine's speed drifts): medians in the table
        ref, each = None, []
        for _ in range(rounds):
            r = apcr_end_to_end(str(b.path), "fp32", None, space, codes)
            ref = ref or r
            t = torch_rows(gen, cls, x)
            if space == "z":  # the DCGANs: PyTorch on the same whole grid, sustained (style256 would take an hour)
                g = torch_grid(gen, cls, ref, space, False)
                t["PyTorch eager fp32 channels-last, whole grid"] = g["points_per_second"]
                info["torch grid fp32"] = {"whole_grid": whole_grid_fidelity(g["apcr"], ref["apcr"])}
            each.append({"corrkit apcr end to end fp32": r["points_per_second"], **t})
        rows["corrkit apcr end to end fp32"] = float(np.median([e["corrkit apcr end to end fp32"] for e in each]))
        info["apcr fp32"] = {k: v for k, v in ref.items() if k not in ("apcr", "latents", "labels", "delta")}
        if rounds > 1:
            info["fp32 rounds"] = [{k: round(v, 1) for k, v in e.items()} for e in each]
        for mode in [m for m in modes if m != "fp32"]:
            # the fast modes run on the fp32 run's codes, so their APCR can be set beside it whole
            r = apcr_end_to_end(str(b.path), mode, ref["latents"], space, codes)
            r["whole_grid"] = whole_grid_fidelity(r["apcr"], ref["apcr"])
            # the mode re-forms the class sets from those codes: count the fp32 members it put elsewhere
            kept = {(z.tobytes(), int(j)) for z, j in zip(r["latents"], r["labels"])}
            r["whole_grid"]["codes_moved"] = sum((z.tobytes(), int(j)) not in kept
                                                 for z, j in zip(ref["latents"], ref["labels"]))
            rows[f"corrkit apcr end to end {mode}"] = r["points_per_second"]
            info[f"apcr {mode}"] = {k: v for k, v in r.items() if k not in ("apcr", "latents", "labels", "delta")}
        rows.update({k: float(np.median([e[k] for e in each])) for k in each[0] if k.startswith("PyTorch")})
        bf16 = rows["PyTorch eager bf16 channels-last"]
        if space == "z" and bf16 < rows["PyTorch eager fp32 channels-last"] / EMULATED:
            # no native bf16 on this CPU: the whole grid would take an hour a size
            print(f"PyTorch bf16 runs at {bf16:.1f} points/s here, under 1/{EMULATED} of its fp32 "
                  "(emulated bf16): its whole-grid row is skipped", flush=True)
        elif space == "z":
            t = torch_grid(gen, cls, ref, space, True)
            rows["PyTorch eager bf16 channels-last, whole grid"] = t["points_per_second"]
            info["torch grid bf16"] = {"whole_grid": whole_grid_fidelity(t["apcr"], ref["apcr"])}
        results[size] = {"rows": rows, "info": info}
        print(table(size, rows, info), flush=True)
    return results


def table(size: int, rows: dict, info: dict) -> str:
    from corrkit.viz.tables import fidelity_text

    fp32, bf16 = rows["PyTorch eager fp32 channels-last"], rows["PyTorch eager bf16 channels-last"]
    title = f"\n### {size}" + (" px" if str(size).isdigit() else " (W+)")
    lines = [title, "", "| path | points/s | × PyTorch fp32 CL | × PyTorch bf16 CL | batch | peak RSS |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, pps in rows.items():
        a = info.get("apcr " + name.rsplit(" ", 1)[-1]) if name.startswith("corrkit apcr") else None
        batch = f"{a['batch_size']} ({a['batch_size_source']})" if a else (str(BATCH) if "PyTorch" in name
                                                                           or "engine" in name or "raw" in name
                                                                           else "")
        rss = f"{a['peak_rss_mb']:.0f} MB" if a else ""
        lines.append(f"| {name} | {pps:,.1f} | {pps / fp32:.2f} | {pps / bf16:.2f} | {batch} | {rss} |")
    for k, v in info.items():
        if (k.startswith("apcr") or k.startswith("torch")) and v.get("whole_grid"):
            f = v["whole_grid"]
            lines.append(f"\n{k} on the fp32 run's codes, whole grid: max |ΔAPCR| {f['max_abs_delta_apcr']:.4f}, "
                         f"min top-10 overlap {f['min_top10_overlap']:.2f} ({f['top10_overlap']})"
                         + (f"; {f['codes_moved']} of fp32's codes in another set (or none) under this mode"
                            if f.get("codes_moved") else ""))
        if k.startswith("apcr") and v.get("fidelity"):
            lines.append(f"\n{k}: {fidelity_text(k.split()[-1], v['fidelity'])}")
        if k.startswith("engine"):
            lines.append(f"\n{k}: {v}")
    for e in info.get("fp32 rounds", []):
        c = e["corrkit apcr end to end fp32"]
        lines.append(f"\nround: apcr fp32 {c:,.1f}, ÷ PyTorch fp32 CL best call "
                     f"{c / e['PyTorch eager fp32 channels-last']:.2f}"
                     + (f", ÷ whole grid {c / e['PyTorch eager fp32 channels-last, whole grid']:.2f}"
                        if "PyTorch eager fp32 channels-last, whole grid" in e else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["64", "128", "256", "style256"],
                    help="DCGAN sizes in px, and style256 (the StyleGAN2-architecture model in W+)")
    ap.add_argument("--modes", nargs="+", default=["fp32", "bf16", "int8"])
    ap.add_argument("--work", type=Path, default=Path("build/scale"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=1,
                    help="exact fp32 apcr and PyTorch fp32 measured this many times in turn; the table shows medians")
    a = ap.parse_args(argv)
    import numba
    import onnxruntime
    import torch

    from corrkit._core.autotune import cpu_name

    cores = len(__import__("os").sched_getaffinity(0))
    head = (f"CPU: {cpu_name()}, {cores} cores; Python {platform.python_version()}, "
            f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, numba {numba.__version__}, "
            f"numpy {np.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(head, flush=True)
    res = suite(a.sizes, a.modes, a.work, a.rounds)
    if a.out:
        a.out.write_text(json.dumps({"machine": head, "results": res}, indent=1, default=str))


if __name__ == "__main__":
    main()
