"""All statistics of the package, as pure functions over a runs table (no I/O, no plotting,
no sentences: those are in ablate.report.text).

- table: input checks (columns, arms, numeric budgets, duplicates), the cell key columns spelled one
  way (prepare), analysis scales, per-arm summaries
- ratio: moments and intervals of the repetition share, a ratio of mean differences
- decompose: the per-budget decomposition with tests, the selection-adjusted "up to"
- planning: how many seeds a share interval needs, and the two-stage plan of --precision
- pooled: the share pooled over budgets
- convergence: how much each cell's runs still move at the end of training (noise, not a verdict)
- stability: whether each design's share still moves at the end of training (the verdict)
- single_seed: the seed paper's one-seed estimator for every seed, and its distribution
- exchangeability: whether a cell's test errors trend with the seed number or finishing order
- multiple: Holm's adjustment of a family of p-values
- invariance: each arm's invariance under its design's group's exact transformations
- retrained: runs retrained under other code against their first training, seed by seed
"""

from ablate.stats.convergence import CONFIDENCE as convergence_confidence
from ablate.stats.convergence import THRESHOLD as convergence_threshold
from ablate.stats.convergence import WINDOW as convergence_window
from ablate.stats.convergence import best_epoch, convergence, run_changes, window_start
from ablate.stats.decompose import (
    MIN_BOOT_SEEDS,
    decompose,
    largest_share,
    point_shares,
    selection_interval,
    share_interval,
)
from ablate.stats.exchangeability import MIN_RUNS as MIN_TREND_RUNS
from ablate.stats.exchangeability import TREND_ORDERS, code_heterogeneity, seed_trends, spearman_p
from ablate.stats.gain_tests import smallest_perm_p
from ablate.stats.invariance import design_invariance, invariance_gaps, orbit_errors
from ablate.stats.planning import (
    ASSURANCE,
    PILOT_MIN,
    PilotTooSmall,
    plan_seeds,
    seeds_needed,
    simulate_two_stage,
)
from ablate.stats.pooled import pooled
from ablate.stats.ratio import bootstrap_interval, delta_interval, fieller_interval
from ablate.stats.retrained import retrained_comparison, retrained_pairs, with_first_training
from ablate.stats.single_seed import SingleSeedShares, single_seed_shares
from ablate.stats.stability import (
    STABLE_TOLERANCE,
    VERDICTS,
    run_fluctuation,
    share_stability,
    share_trajectory,
    verdict,
)
from ablate.stats.table import (
    GAINS,
    REQUIRED,
    SCALE_LABELS,
    SCALES,
    StatsWarning,
    arm_summary,
    complete_budgets,
    prepare,
    to_scale,
)

__all__ = [
    "ASSURANCE",
    "GAINS",
    "MIN_BOOT_SEEDS",
    "MIN_TREND_RUNS",
    "PILOT_MIN",
    "PilotTooSmall",
    "REQUIRED",
    "SCALES",
    "SCALE_LABELS",
    "SingleSeedShares",
    "StatsWarning",
    "TREND_ORDERS",
    "arm_summary",
    "best_epoch",
    "complete_budgets",
    "convergence",
    "convergence_confidence",
    "convergence_threshold",
    "convergence_window",
    "bootstrap_interval",
    "code_heterogeneity",
    "decompose",
    "delta_interval",
    "design_invariance",
    "invariance_gaps",
    "orbit_errors",
    "retrained_comparison",
    "retrained_pairs",
    "with_first_training",
    "fieller_interval",
    "largest_share",
    "plan_seeds",
    "point_shares",
    "pooled",
    "prepare",
    "run_changes",
    "seed_trends",
    "share_stability",
    "share_trajectory",
    "run_fluctuation",
    "STABLE_TOLERANCE",
    "VERDICTS",
    "verdict",
    "seeds_needed",
    "selection_interval",
    "share_interval",
    "simulate_two_stage",
    "single_seed_shares",
    "spearman_p",
    "smallest_perm_p",
    "to_scale",
    "window_start",
]
