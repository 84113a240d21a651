"""One process against a local Ray instance on this machine, and Ray's per-shard overhead (docs/ray.md).

A plain script, not part of the pytest-benchmark suite:

    .venv/bin/python benchmarks/ray_scaling.py --samples-per-class 16 --repeat 2 --out ray_scaling.json

1. ``corrkit.apcr`` on the built-in bundle, one process (all cores), then with
   ``executor="ray"`` on a local instance (one 1-thread actor per core); wall time
   of each call, points/s, and whether the two results are equal bit for bit.
2. Per-shard overhead on warm actors: the round trip of an empty shard (scheduling,
   argument resolution, the float64 sums coming back) one at a time and pipelined
   through ``RayPool.run``, for the default grid's sums (K=100) and StyleGAN-sized
   ones (K=512), plus the driver's fold of one shard.
3. End to end: the same small grid on Ray with 1-batch shards and with default
   (16-batch) shards; the time difference over the shard-count difference.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import corrkit
from corrkit._core import shards
from corrkit._core.bundle import builtin_path, load_bundle
from corrkit._core.distributed import RayPool
from corrkit._core.engine import Engine, cpu_count
from corrkit._core.grid import Grid
from corrkit.kernels import apcr as kern

ARRAYS = ("apcr", "curves", "up", "down", "counts", "latents", "labels", "base")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def end_to_end(bundle, spc: int, repeat: int) -> dict:
    """Single process and Ray, interleaved ``repeat`` times so machine load hits both alike."""
    rows = []
    for _ in range(repeat):
        single, t_single = timed(lambda: corrkit.apcr(bundle, samples_per_class=spc,
                                                      execution=corrkit.Execution(device="cpu")))
        on_ray, t_ray = timed(lambda: corrkit.apcr(bundle, samples_per_class=spc,
                                                   execution=corrkit.Execution(device="cpu", executor="ray")))
        rows.append(
            {
                "single_seconds": round(t_single, 2),
                "single_points_per_s": round(single.points / t_single, 1),
                "ray_seconds": round(t_ray, 2),
                "ray_points_per_s": round(on_ray.points / t_ray, 1),
                "ray_startup_seconds": on_ray.params["executor"]["startup_seconds"],
                "bitwise_equal": all(np.array_equal(getattr(single, k), getattr(on_ray, k)) for k in ARRAYS),
                "load_average_1min": os.getloadavg()[0],
            }
        )
    return {
        "samples_per_class": spc,
        "points": single.points,
        "shards": on_ray.params["executor"]["shards"],
        "batch_size": single.params["batch_size"],
        "shard_points": single.params["shard_points"],
        "ray_workers": on_ray.params["executor"]["workers"],
        "runs": rows,
    }


def shard_overhead(bundle, n: int = 100) -> dict:
    import ray

    engine = Engine(bundle, device="cpu")
    (pool, t_start) = timed(lambda: RayPool(engine, device="cpu", workers=1))
    _, t_ready = timed(lambda: pool.provider)  # waits for the actor's Engine
    out = {"pool_start_seconds": round(t_start + t_ready, 3)}
    z = np.random.default_rng(0).standard_normal((320, 100)).astype(np.float32)
    base = engine.probabilities(z[:64])
    for k in (100, 512):
        d = np.eye(100, dtype=np.float32)[np.arange(k) % 100]
        task = shards.ShardTask(Grid(z, d, 3, 1.0), np.tile(base, (5, 1)), np.arange(320) % 10)
        ref, actor = ray.put(task), pool.workers[0]
        ray.get(actor.run_shard.remote(ref, 0, 0))  # warm
        _, t = timed(lambda: [ray.get(actor.run_shard.remote(ref, 0, 0)) for _ in range(n)])
        _, t_pipe = timed(lambda: list(pool.run(task, [(0, 0)] * n)))
        part = kern.new_sums(k, 3, 10)
        total = kern.new_sums(k, 3, 10)
        _, t_fold = timed(lambda: [shards.fold(total, part) for _ in range(n)])
        out[f"K{k}"] = {
            "sums_bytes": int(sum(a.nbytes for a in part.values())),
            "round_trip_ms": round(1e3 * t / n, 2),
            "pipelined_ms_per_shard": round(1e3 * t_pipe / n, 2),
            "fold_ms": round(1e3 * t_fold / n, 3),
        }
    pool.close()
    return out


def shard_sweep(bundle, spc: int) -> dict:
    batch = Engine(bundle, device="cpu").batch_size
    fine, t_fine = timed(lambda: corrkit.apcr(bundle, samples_per_class=spc, execution=corrkit.Execution(
        device="cpu", executor="ray", shard_points=batch)))
    coarse, t_coarse = timed(lambda: corrkit.apcr(bundle, samples_per_class=spc,
                                                  execution=corrkit.Execution(device="cpu", executor="ray")))
    n_fine, n_coarse = fine.params["executor"]["shards"], coarse.params["executor"]["shards"]
    return {
        "samples_per_class": spc,
        "shards_fine": n_fine,
        "seconds_fine": round(t_fine, 2),
        "shards_coarse": n_coarse,
        "seconds_coarse": round(t_coarse, 2),
        "overhead_ms_per_shard": round(1e3 * (t_fine - t_coarse) / (n_fine - n_coarse), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples-per-class", type=int, default=32)
    ap.add_argument("--sweep-samples-per-class", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import ray

    bundle = load_bundle(builtin_path())
    _, t_init = timed(lambda: ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False))
    res = {"cpus": cpu_count(), "ray": ray.__version__, "versions": corrkit.versions(), "ray_init_seconds": t_init}
    res["end_to_end"] = end_to_end(bundle, args.samples_per_class, args.repeat)
    print(json.dumps(res["end_to_end"]), flush=True)
    res["per_shard"] = shard_overhead(bundle)
    print(json.dumps(res["per_shard"]), flush=True)
    res["sweep"] = shard_sweep(bundle, args.sweep_samples_per_class)
    print(json.dumps(res["sweep"]), flush=True)
    ray.shutdown()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
