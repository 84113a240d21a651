"""Defaults that the library and the CLI both read, each stated once with its reason.

A command's option default and the library function's keyword default are the
same constant from here, so ``corrkit apcr`` and ``corrkit.apcr()`` cannot drift.
"""

from __future__ import annotations

# SPEC §2: codes per class set; 32 gives each class a stable mean at ~1 min for the default grid on 2 cores.
SAMPLES_PER_CLASS = 32
# The yardstick runs five or more direction sets on one model, so each uses half the codes (SPEC §9).
COMPARE_SAMPLES_PER_CLASS = 16
# SPEC §2: minimum class probability tau of a code, steps m each side and the step length delta.
THRESHOLD = 0.5
STEPS = 3
DELTA = 1.0
SEED = 0
# Controlling sets and tables: the paper's k = 10 (Table 1).
TOP_K = 10
# Seconds between checkpoints of a resumable run.
CHECKPOINT_SECONDS = 10.0
# SPEC §11 error bars: percentile bootstrap with B resamples of each class's codes, seeded, 95% level.
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95
