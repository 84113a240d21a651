"""The machinery every method stands on: bundles, the engine, grids, shards, run folders, atomic io."""
