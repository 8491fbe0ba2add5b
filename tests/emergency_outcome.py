"""A toy third outcome for the tests: an emergency admission within 12 months, as SPARRA
predicts. Not a product outcome: it is registered only where CARERISK_OUTCOME_MODULES names
this module, and it is here to show that a new outcome is one definition plus its label
function, with no other file edited.
"""

from __future__ import annotations

from datetime import date

import ibis.expr.types as ir

from features.bands import RiskBands
from features.definitions import Sources
from features.labels import LabelSettings, in_horizon, with_death
from features.outcomes import Cohort, Outcome


def emergency_admission(src: Sources, day: date, end: date, settings: LabelSettings) -> ir.Table:
    """person_id of everyone admitted as an emergency in [day, end), while alive."""
    spells = with_death(src["hospital_episode"], src)
    emergency = spells.filter(
        (spells.admission_method == "emergency")
        & in_horizon(spells.admission_date, spells.died, day, end)
    )
    return emergency.select("person_id").distinct()


EMERGENCY_ADMISSION = Outcome(
    name="emergency_admission",
    title="Emergency admission",
    predicts="an emergency hospital admission within 12 months",
    horizon_months=12,
    cohort=Cohort(
        min_age=16, words="aged 16 or over, alive and not living in a care home at the index date"
    ),
    label=emergency_admission,
    # three bands with labels of their own: the service and pages must take them from the model
    bands=RiskBands((0.10, 0.25), ("lower", "middle", "higher")),
    capacity_unit="people",
)

OUTCOMES = (EMERGENCY_ADMISSION,)
MODULE = __name__
