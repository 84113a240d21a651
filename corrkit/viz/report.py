"""One self-contained HTML page for one or more run folders.

Images are embedded as base64 ``data:`` URIs and the CSS is inline: the page
needs no network, no JavaScript and no other file. Whatever a run folder holds
is shown: ``summary.json``/``apcr.npz`` (``corrkit apcr``), ``control.json``,
``manipulate.json``, ``translate.json``, ``compare.json``, ``latents.json``,
``invert.json`` and every ``*.png``; figures that the data allow but that were
not drawn yet are drawn on the fly.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from corrkit._core import io, runs
from corrkit.errors import CorrkitError

RESULT_FILES = ("summary.json", "control.json", "manipulate.json", "translate.json", "compare.json",
                "latents.json", "invert.json")
RESULT_TITLES = {
    "summary.json": "Sequential intervention (APCR)",
    "control.json": "Controlling sets: sequential intervention vs optimisation",
    "manipulate.json": "Concept manipulation",
    "translate.json": "Class-to-class translation",
    "compare.json": "Direction methods compared",
    "latents.json": "Latent space: do classes separate?",
    "invert.json": "Latent codes of real images (inversion)",
}
CAPTIONS = {
    "curves.png": "Mean class probability along the three strongest directions of each class (paper Fig. 3).",
    "apcr_hist.png": "Histogram of APCR over directions, per class (paper Fig. 4).",
    "apcr_heatmap.png": "APCR of every direction for every class; dots mark each class's controlling set.",
    "traversal_overview.png": "Each class's strongest direction applied to one of its codes.",
    "intersection_ratio.png": "Intersection ratio of the controlling sets found by sequential intervention and by "
                              "optimisation (paper Table 1).",
    "translation_matrix.png": "Class-to-class translation success rates (paper Fig. 6).",
    "compare.png": "Strongest APCR per class for each direction method (SPEC §9).",
    "flip_rate.png": "Flip rate of concept manipulation through top, bottom and random sets (paper Fig. 5).",
    "tsne.png": "t-SNE of latent codes coloured by class (paper Fig. 1).",
    "recon.png": "Real test images and the generator's images of their inverted codes.",
}
ORDER = list(CAPTIONS)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d232b;
background:#f6f7f9;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{margin:0 0 4px;font-size:1.7em}h2{margin-top:2.2em;border-bottom:2px solid #d8dde4;padding-bottom:4px}
h3{margin-top:1.6em;color:#37414d}
.meta{color:#5a6572;font-size:.92em}
nav ul{columns:2;padding-left:1.2em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.88em;background:#fff}
th,td{border:1px solid #d8dde4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:.8em 0}
.card{background:#fff;border:1px solid #d8dde4;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:1.35em}.card span{color:#5a6572;font-size:.85em}
figure{background:#fff;border:1px solid #d8dde4;border-radius:6px;margin:14px 0;padding:10px;text-align:center}
figure img{max-width:100%;height:auto}figcaption{color:#37414d;font-size:.9em;margin-top:6px}
.warn{background:#fff4e0;border-left:4px solid #e39b1b;padding:6px 10px}
code{background:#eef1f5;padding:0 3px;border-radius:3px}
"""

TEST_HOOKS = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target || {};
    errors.push(String(e.message || ("failed to load " + (t.alt || t.tagName || "resource"))));
  }, true);
  var original = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                       .map(function (i) { return i.alt; });
    var marker = document.createElement("pre");
    marker.id = "corrkit-test-result";
    marker.textContent = JSON.stringify({images: images.length, broken: broken, errors: errors,
      widths: images.map(function (i) { return i.naturalWidth; })});
    document.body.appendChild(marker);
  });
})();
</script>"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return f"{v:.4g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:.4f}".rstrip("0").rstrip(".")
    if isinstance(v, list):
        shown = ", ".join(_fmt(x) for x in v[:12])
        return f"[{shown}{', …' if len(v) > 12 else ''}]" + (f" ({len(v)} values)" if len(v) > 12 else "")
    return str(v)


def _kv_table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td{' class=num' if _is_num(v) else ''}>{_e(_fmt(v))}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>" if body else ""


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _class_table(rows: Sequence[tuple[str, Sequence]], classes: Sequence[str]) -> str:
    if not rows:
        return ""
    head = "<tr><th></th>" + "".join(f"<th>{_e(c)}</th>" for c in classes) + "<th>mean</th></tr>"
    body = ""
    for name, vals in rows:
        nums = [float(v) for v in vals]
        body += (f"<tr><th>{_e(name)}</th>" + "".join(f"<td class=num>{_fmt(v)}</td>" for v in nums)
                 + f"<td class=num>{_fmt(float(np.mean(nums)))}</td></tr>")
    return f"<table>{head}{body}</table>"


def _matrix_table(name: str, m: Sequence[Sequence], classes: Sequence[str]) -> str:
    head = f"<tr><th>{_e(name)}</th>" + "".join(f"<th>{_e(c)}</th>" for c in classes) + "</tr>"
    body = "".join(f"<tr><th>{_e(classes[j])}</th>" + "".join(f"<td class=num>{_fmt(v)}</td>" for v in row)
                   + "</tr>" for j, row in enumerate(m))
    return f"<table>{head}{body}</table>"


def _numeric_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_num(x) for x in v)


def _sort_json(obj, key: str, classes: list[str], scalars: list, rows: list, matrices: list) -> None:
    c = len(classes)
    if isinstance(obj, dict):
        if c and obj and all(k in classes for k in obj) and all(_is_num(v) for v in obj.values()):
            rows.append((key, [obj.get(name, float("nan")) for name in classes]))
            return
        for k, v in obj.items():
            if k != "classes" and not (not key and k == "versions"):
                _sort_json(v, f"{key}.{k}" if key else str(k), classes, scalars, rows, matrices)
    elif c and _numeric_list(obj) and len(obj) == c:
        rows.append((key, obj))
    elif c and isinstance(obj, list) and len(obj) == c and all(_numeric_list(r) and len(r) == c for r in obj):
        matrices.append((key, obj))
    else:
        scalars.append((key, obj))


def json_tables(data: dict, classes: Sequence[str] | None) -> str:
    """Any result JSON as tables: scalars, per-class rows (lists or ``{class: number}``), ``C x C`` matrices."""
    scalars: list = []
    rows: list = []
    matrices: list = []
    classes = list(classes or [])
    _sort_json(data, "", classes, scalars, rows, matrices)
    return (_kv_table(scalars) + _class_table(rows, classes)
            + "".join(_matrix_table(k, m, classes) for k, m in matrices))


def _img(name: str, data: bytes, caption: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{b64}" alt="{_e(name)}">'
            f"<figcaption><code>{_e(name)}</code> {_e(caption)}</figcaption></figure>")


def _figure_order(name: str) -> tuple:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def run_figures(run_dir: Path, render: bool = True) -> dict[str, bytes]:
    """PNG files of a run folder (and its ``figures/``), plus the figures its data allow that are missing."""
    figs = {}
    for folder in (run_dir, run_dir / "figures"):
        for p in sorted(folder.glob("*.png")) if folder.is_dir() else []:
            figs.setdefault(p.name, p.read_bytes())
    if render:
        try:
            from corrkit.viz.figures import render_run

            figs.update(render_run(run_dir, skip=list(figs)))
        except CorrkitError as exc:
            warnings.warn(f"{run_dir}: some figures could not be drawn ({exc})", stacklevel=2)
    return dict(sorted(figs.items(), key=lambda kv: _figure_order(kv[0])))


def _bundle_section(results: list[dict]) -> str:
    """The card of the bundle the runs were made with (checked against the recorded generator hash)."""
    recorded = [runs.recorded_bundle(r.get("summary.json"), r.get("invert.json")) for r in results]
    path, sha = next(((p, h) for p, h in recorded if p or h), (None, None))
    bundle = runs.find_bundle(path)
    if bundle is None:
        return "<h2 id=bundle>Model bundle</h2><p class=warn>The bundle these runs used is not available.</p>"
    card = bundle.card()
    out = "<h2 id=bundle>Model bundle</h2>"
    if sha and card["files"].get("generator") != sha:
        out += ("<p class=warn>The bundle at this path has changed since the run (generator hash differs); "
                "the card below describes the bundle as it is now.</p>")
    prov = card.get("provenance") or {}
    met = card.get("metrics") or {}
    cls_train = prov.get("classifier_training") or {}
    cards = [("classifier test accuracy", met.get("classifier_test_accuracy")),
             ("generator Fréchet distance", met.get("frechet_distance")),
             ("mean classifier confidence", met.get("mean_confidence")),
             ("latent size", card["latent_dim"]), ("classes", card["n_classes"])]
    out += "<div class=cards>" + "".join(f"<div class=card><b>{_e(_fmt(v))}</b><span>{_e(k)}</span></div>"
                                         for k, v in cards if v is not None) + "</div>"
    out += _kv_table([("name", bundle.meta.get("name", "")), ("path", card["path"]),
                      ("classes", ", ".join(card["classes"])), ("image shape", card["image_shape"]),
                      ("classifier output", card["classifier_output"]),
                      ("generator sha256", card["files"].get("generator", "")[:16] + "…"),
                      ("classifier sha256", card["files"].get("classifier", "")[:16] + "…")])
    out += "<h3>Metrics</h3>" + json_tables(met, card["classes"])
    summary = [("dataset", prov.get("dataset")), ("generator selected", prov.get("generator_selected")),
               ("classifier training", cls_train.get("settings")),
               ("GAN training", (prov.get("gan_training") or {}).get("settings")),
               ("torch", prov.get("torch")), ("code version", prov.get("code_version")), ("built", prov.get("built"))]
    out += "<h3>Provenance</h3>" + _kv_table([(k, json.dumps(v) if isinstance(v, dict) else v)
                                              for k, v in summary if v not in (None, {}, "")])
    return out


def _apcr_summary(s: dict) -> str:
    classes = s.get("classes") or []
    cards = [("points evaluated", s.get("points")), ("seconds", s.get("seconds")),
             ("points per second", s.get("points_per_second")), ("provider", s.get("provider")),
             ("directions", (s.get("params") or {}).get("n_directions"))]
    out = "<div class=cards>" + "".join(f"<div class=card><b>{_e(_fmt(v))}</b><span>{_e(k)}</span></div>"
                                        for k, v in cards if v is not None) + "</div>"
    out += "<h3>Parameters</h3>" + _kv_table(list((s.get("params") or {}).items()))
    if s.get("counts") and classes:
        out += "<h3>Codes per class</h3>" + _class_table([("codes", s["counts"])], classes)
    top = s.get("top") or {}
    iv = ((s.get("intervals") or {}).get("top")) or {}

    def one(t, c, r):  # "12 (0.412 [0.371, 0.455] 97%)": the value, its 95% interval and its inclusion
        mine = iv.get(c)
        got = mine[r] if isinstance(mine, list) and len(mine) > r else None
        if not got or got.get("direction") != t["direction"]:
            return f"{t['direction']} ({t['apcr']:.3f})"
        hi = "∞" if got["hi"] is None else f"{got['hi']:.3f}"
        inc = "—" if got["inclusion"] is None else f"{100 * got['inclusion']:.0f}%"
        return f"{t['direction']} ({t['apcr']:.3f} [{got['lo']:.3f}, {hi}] {inc})"

    if top:
        rows = "".join(
            f"<tr><th>{_e(c)}</th><td>" + (_e(", ".join(one(t, c, r) for r, t in enumerate(top[c])))
                                           if top[c] else "— (no codes)") + "</td></tr>" for c in top)
        note = ("<p>[lo, hi]: 95% percentile-bootstrap interval of APCR over the class's codes; %: share of "
                "resamples in which the direction stays in the top k (SPEC §11).</p>") if iv else ""
        out += "<h3>Controlling sets: top directions per class (APCR)</h3><table>" + rows + "</table>" + note
    if s.get("versions"):
        out += "<h3>Versions</h3>" + _kv_table(list(s["versions"].items()))
    return out


def _latents_summary(d: dict) -> str:
    rows = [(name, d[key]) for name, key in (("codes", "codes"), ("codes, shuffled labels (control)",
                                                                   "codes_shuffled_labels"), ("prior samples", "prior"))
            if key in d]
    body = "".join(f"<tr><th>{_e(n)}</th><td class=num>{v['accuracy']:.3f}</td><td class=num>{v['std']:.3f}</td>"
                   f"<td class=num>{v['chance']:.3f}</td><td class=num>{v['n']}</td></tr>" for n, v in rows)
    return ("<h3>Linear probe: class from latent code (cross-validated)</h3><table><tr><th></th><th>accuracy</th>"
            f"<th>std over folds</th><th>chance</th><th>codes</th></tr>{body}</table>")


def _run_section(k: int, run_dir: Path, results: dict, figs: dict[str, bytes]) -> str:
    out = f"<h2 id=run{k}>Run {k}: <code>{_e(run_dir)}</code></h2>"
    classes = None
    for data in results.values():
        classes = classes or data.get("classes")
    if "summary.json" in results:
        out += "<h3>Sequential intervention (APCR)</h3>" + _apcr_summary(results["summary.json"])
    for name in RESULT_FILES[1:]:
        data = results.get(name)
        if data is None:
            continue
        out += f"<h3>{_e(RESULT_TITLES[name])} <small><code>{_e(name)}</code></small></h3>"
        if name == "latents.json":  # the probe results get their own table
            out += _latents_summary(data)
            data = {k: v for k, v in data.items() if k not in ("codes", "codes_shuffled_labels", "prior")}
        out += json_tables(data, classes)
    if figs:
        out += "<h3>Figures</h3>" + "".join(_img(n, b, _caption(n, classes))
                                            for n, b in figs.items())
    return out


PREFIX_CAPTIONS = {
    "traversal_": "Generator images along a direction (rows), intervention steps as columns.",
    "manipulate_": "Concept manipulation through the top, bottom and random sets (rows = codes, columns = steps).",
    "translate_": "Class-to-class translation by extreme interventions (rows = codes, columns = steps).",
}


def _caption(name: str, classes) -> str:
    if name in CAPTIONS:
        return CAPTIONS[name]
    if name.startswith("traversal_") and classes and name[10:12].isdigit() and int(name[10:12]) < len(classes):
        return f"Images along the top directions of {classes[int(name[10:12])]} (rows), steps as columns."
    return next((text for prefix, text in PREFIX_CAPTIONS.items() if name.startswith(prefix)), "")


def build_report(run_dirs: Sequence[str | Path], out: str | Path | None = None, *, title: str = "corrkit report",
                 render: bool = True, test_hooks: bool = False) -> str:
    """The HTML page for ``run_dirs``; written atomically to ``out`` when given.

    Parameters
    ----------
    render : bool
        Draw the figures a run's data allow when their PNG is missing.
    test_hooks : bool
        Add a script that records broken images and errors in a ``<pre
        id="corrkit-test-result">`` after load (for the browser test only).
    """
    from corrkit import __version__

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise CorrkitError("give at least one run folder")
    results, figures = [], []
    for d in run_dirs:
        if not d.is_dir():
            raise CorrkitError(f"{d} is not a folder; give the --out folders of corrkit runs")
        if (d / "summary.json").exists() or (d / "apcr.npz").exists():
            from corrkit.methods.sequential import APCRResult

            APCRResult.load(d)  # the page shows summary.json's numbers only when they are apcr.npz's
        found = {n: runs.read_result(d / n) for n in RESULT_FILES if (d / n).is_file()}
        results.append({n: v for n, v in found.items() if v is not None})
        figures.append(run_figures(d, render))
        if not results[-1] and not figures[-1]:
            raise CorrkitError(f"{d} holds no corrkit results (summary.json, *.json, *.png)")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = "".join(f"<li><a href='#run{k}'>Run {k}: {_e(d)}</a></li>" for k, d in enumerate(run_dirs, 1))
    body = (f"<h1>{_e(title)}</h1><p class=meta>Generated {now} by corrkit {__version__}. "
            f"{sum(map(len, figures))} figures from {len(run_dirs)} run folder(s).</p>"
            f"<nav><ul><li><a href='#bundle'>Model bundle</a></li>{toc}</ul></nav>")
    body += _bundle_section(results)
    body += "".join(_run_section(k, d, r, f) for k, (d, r, f) in enumerate(zip(run_dirs, results, figures), 1))
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style>"
            f"{TEST_HOOKS if test_hooks else ''}</head><body><main>{body}</main></body></html>\n")
    if out is not None:
        io.write_bytes(Path(out), page.encode("utf-8"))
    return page
