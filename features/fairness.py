"""The fairness groups: the descriptors of a person that every subgroup table is cut by.

Training sets carry them as columns (features.training_sets.descriptors computes them), the
scores history stores them beside each score, and the evaluation and the monitor cut their
subgroup tables by them: each reads the names from here.
"""

from __future__ import annotations

FAIRNESS_GROUPS: tuple[str, ...] = (
    "age_band",
    "sex",
    "ethnicity",
    "imd_quintile",
    "district",
    "gp_system",
    "completeness",
)
