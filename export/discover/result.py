"""The result of a discovery run (SPEC §8) and its files: ``directions.npz``, ``discover.json``, ``rca.png``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit.errors import MissingExtraError
from corrkit.export import _plot
from corrkit.export.discover.settings import METHODS, DiscoverSettings


@dataclass
class DiscoverResult:
    """Voynov–Babenko directions and the RCA of the three trainings.

    Attributes
    ----------
    directions : ndarray, float32, shape [K, N]
        Columns of the learned ``A``, unit norm, as rows (``A``'s column order).
    rca, rca_random, rca_coordinate : float
        Reconstructor classification accuracy of the learned, random orthogonal and
        coordinate directions on the same fresh pairs (chance is ``1 / K``).
    eps_mae : dict
        Per method, the mean ``|eps_hat - eps|`` on those pairs.
    settings : DiscoverSettings
    seconds, cpu_seconds : dict
        Per method, training wall seconds (without evaluation) and process CPU seconds
        (all threads; on a busy machine ``cpu_seconds / threads`` estimates the idle wall time).
    history : dict
        Per method, rows ``[step, loss, ce, |eps| term, batch accuracy]`` (means between logs).
    """

    directions: np.ndarray
    rca: float
    rca_random: float
    rca_coordinate: float
    eps_mae: dict
    settings: DiscoverSettings
    seconds: dict
    history: dict
    cpu_seconds: dict = field(default_factory=dict)
    elapsed: float = 0.0  # wall seconds of the whole run (trainings side by side with workers > 1)

    def summary(self) -> dict:
        k = len(self.directions)
        sps = {m: round(self.settings.steps / t, 3) if t > 0 else None for m, t in self.seconds.items()}
        return {"rca": self.rca, "rca_random": self.rca_random, "rca_coordinate": self.rca_coordinate,
                "chance": 1 / k, "gap_over_best_baseline": self.rca - max(self.rca_random, self.rca_coordinate),
                "eps_mae": self.eps_mae, "n_directions": k, "latent_dim": int(self.directions.shape[1]),
                "seconds": {m: round(t, 1) for m, t in self.seconds.items()}, "steps_per_second": sps,
                "cpu_seconds": {m: round(t, 1) for m, t in self.cpu_seconds.items()},
                "elapsed_seconds": round(self.elapsed, 1),
                "settings": asdict(self.settings)}

    def save(self, out: str | Path) -> dict[str, Path]:
        """``directions.npz``, ``discover.json`` and ``rca.png`` (when matplotlib is there), each atomically."""
        out = Path(out)
        files = {"npz": out / "directions.npz", "json": out / "discover.json"}
        # settings go in as a 1-d string so that `corrkit compare` shows only the 0-d RCA scalars
        io.write_npz(files["npz"], directions=self.directions, rca=np.float64(self.rca),
                     rca_random=np.float64(self.rca_random), rca_coordinate=np.float64(self.rca_coordinate),
                     settings=np.array([json.dumps(asdict(self.settings))]))
        io.write_json(files["json"], {**self.summary(), "history": self.history})
        try:
            rca_figure(self, out / "rca.png")
            files["png"] = out / "rca.png"
        except MissingExtraError:  # no matplotlib: the numbers are in the other two files
            pass
        return files


def rca_figure(result: DiscoverResult, out: str | Path | None = None) -> bytes:
    """The three RCAs (SPEC §8) as bars with the chance level, and beside them each training's batch
    accuracy over the steps (from ``history``: where the learned set pulls ahead, and how fast the
    baselines follow). PNG bytes, written to ``out`` if given."""
    names = [f"learned ({result.settings.kind})", "random orthogonal", "coordinate"]
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    values = [result.rca, result.rca_random, result.rca_coordinate]
    chance = 1 / len(result.directions)
    curves = [np.asarray(result.history.get(m) or [], float).reshape(-1, 5) for m in METHODS]
    fig = _plot.figure(9.0, 3.6)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.3])
    bars = ax.bar(names, values, color=colors)
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(chance, color="grey", ls="--", lw=1, label="chance 1/K")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("reconstructor classification accuracy")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"RCA on fresh pairs, K = {len(result.directions)}, {result.settings.steps} steps each", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    for name, color, h in zip(names, colors, curves):
        if len(h):
            ax2.plot(h[:, 0], h[:, 4], color=color, lw=1.2, label=name)
    ax2.axhline(chance, color="grey", ls="--", lw=1)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("batch accuracy (mean between logs)")
    ax2.set_title("training", fontsize=10)
    ax2.legend(fontsize=8, loc="lower right")
    return _plot.png(fig, out)
