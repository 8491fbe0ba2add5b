"""The feature list: the one place a feature is defined.

Training, serving, registers and reports read features only through `FEATURES`.
Each entry says what the feature is in plain words, where it comes from, its window,
whether a practitioner can act on it, whether it is clinical (hidden from the fire
service), and the direction of its expected effect on each outcome.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from features.codes import CONDITIONS, EFI_BANDS, FRID_CLASSES

FeatureKind = Literal["numeric", "binary", "categorical"]


@dataclass(frozen=True)
class Feature:
    name: str
    label: str  # plain words with a {value} placeholder, e.g. "{value} falls in the last 12 months"
    sources: tuple[str, ...]  # contract tables it reads
    kind: FeatureKind = "numeric"
    window_days: int | None = None  # lookback; None for "ever" or status at the index date
    unit: str = ""
    modifiable: bool = False  # something a practitioner can act on
    # diagnoses, medicines, hospital detail and personal characteristics (sex, ethnicity,
    # deprivation, record completeness): never shown to the fire role
    clinical: bool = True
    # +1 raises risk, -1 lowers it, 0 no stated direction; by outcome name (features/outcomes.py)
    direction: Mapping[str, int] = field(default_factory=dict)
    # use the direction as a monotone constraint in training (clinically justified only)
    constrain: bool = False
    categories: tuple[str, ...] = ()  # for categorical features, the known levels in order
    # shown as a reason to practitioners; False for model inputs that only describe the data
    # (e.g. how much history the extract holds), which mean nothing to act on
    explain: bool = True
    minimum: float | None = None
    maximum: float | None = None
    # the label when the value is 1, for counts: "{value} recorded fall in the last 3 months"
    label_one: str = ""
    # the words when the value is missing, where "unknown" would mislead: "no recorded fall"
    label_missing: str = ""
    # columns it reads that a source may not supply ("table.column", features.coverage): the
    # feature is missing when one is not supplied
    reads: tuple[str, ...] = ()

    def direction_for(self, outcome: str) -> int:
        return int(self.direction.get(outcome, 0))

    def describe(self, value: object) -> str:
        """The label with the person's value filled in, in plain words."""
        plain = self.plain_value(value)
        if plain == "unknown" and self.label_missing:
            return self.label_missing
        label = self.label_one if self.label_one and plain == "1" else self.label
        return label.format(value=plain)

    def plain_value(self, value: object) -> str:
        """yes/no for binary features, whole numbers without decimals, 'unknown' for missing
        and for a number that is not finite (never "inf" or "nan")."""
        if value is None or value == "unknown" or (isinstance(value, float) and not _finite(value)):
            return "unknown"
        if self.kind == "binary" and isinstance(value, int | float | bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else f"{value:.2f}"
        return str(value)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


# --- building blocks ------------------------------------------------------------------------

F, CD = "falls", "complex_dependency"
WINDOWS: tuple[int, ...] = (90, 365, 730)
HOSPITAL = ("hospital_episode",)
FALL_SOURCES = ("ae_attendance", "hospital_episode", "ambulance_incident", "gp_event")
FRACTURE_SOURCES = ("ae_attendance", "hospital_episode", "gp_event")


def _dir(falls: int = 0, complex_dependency: int = 0) -> dict[str, int]:
    return {F: falls, CD: complex_dependency}


def _windowed(
    stem: str,
    labels: tuple[str, str],
    sources: tuple[str, ...],
    unit: str,
    falls: int,
    cd: int,
    **kw: object,
) -> tuple[Feature, ...]:
    """One count feature per lookback window; labels: (many, one) with a {window} placeholder."""
    many, one = labels
    return tuple(
        Feature(
            name=f"{stem}_{days}d",
            label=many.format(value="{value}", window=_window_words(days)),
            label_one=one.format(value="{value}", window=_window_words(days)),
            sources=sources,
            window_days=days,
            unit=unit,
            direction=_dir(falls, cd),
            minimum=0,
            maximum=days,  # at most one a day (bed days: every day of the window)
            **kw,  # type: ignore[arg-type]
        )
        for days in WINDOWS
    )


def _counted(words: str) -> tuple[str, str]:
    """("{value} <words, plural>", "{value} <words, singular>") from words with an {s} mark."""
    return "{value} " + words.replace("{s}", "s"), "{value} " + words.replace("{s}", "")


def _window_words(days: int) -> str:
    return {90: "3 months", 365: "12 months", 730: "2 years"}[days]


# Direction of each recorded condition: (falls, complex dependency).
_CONDITION_DIRECTIONS: dict[str, tuple[int, int]] = {
    "dementia": (1, 1),
    "parkinsons": (1, 0),
    "stroke": (1, 0),
    "multiple_sclerosis": (1, 0),
    "urinary_incontinence": (1, 1),
    "visual_impairment": (1, 0),
    "depression": (1, 0),
    "heart_failure": (0, 1),
    "copd": (0, 1),
    "ckd": (0, 1),
    "diabetes": (0, 0),
    "complicated_diabetes": (0, 1),
    "liver_disease": (0, 1),
    "cancer": (0, 1),
    "hemiplegia": (0, 1),
    "osteoporosis": (1, 0),
}
_CONDITION_WORDS: dict[str, str] = {
    "dementia": "dementia",
    "parkinsons": "Parkinson's disease",
    "stroke": "stroke",
    "multiple_sclerosis": "multiple sclerosis",
    "urinary_incontinence": "urinary incontinence",
    "visual_impairment": "visual impairment",
    "depression": "depression",
    "heart_failure": "heart failure",
    "copd": "COPD",
    "ckd": "chronic kidney disease",
    "diabetes": "diabetes",
    "complicated_diabetes": "diabetes with complications",
    "liver_disease": "liver disease",
    "cancer": "cancer",
    "hemiplegia": "hemiplegia",
    "osteoporosis": "osteoporosis",
}
# Conditions a practitioner can act on (continence and vision care).
_MODIFIABLE_CONDITIONS = frozenset({"urinary_incontinence", "visual_impairment"})
_FRID_WORDS: dict[str, tuple[str, str]] = {  # (many, one)
    "antidepressants": ("antidepressants", "antidepressant"),
    "hypnotics_anxiolytics": ("hypnotics or anxiolytics", "hypnotic or anxiolytic"),
    "antipsychotics": ("antipsychotics", "antipsychotic"),
    "antihypertensives": ("antihypertensives", "antihypertensive"),
    "antiepileptics": ("antiepileptics", "antiepileptic"),
    "antiparkinson": ("anti-Parkinson drugs", "anti-Parkinson drug"),
    "sedating_antihistamines": ("sedating antihistamines", "sedating antihistamine"),
    "opioids": ("opioids", "opioid"),
    "urinary_antimuscarinics": ("urinary antimuscarinics", "urinary antimuscarinic"),
}
ETHNIC_GROUP_LEVELS = ("white", "mixed", "asian", "black", "other")
MAX_MEDICINES = 100  # different medicines issued in 3 months: more is not plausible
MAX_DAYS = 44_000  # days since an event: about 120 years
EFI_BAND_LEVELS = tuple(band for band, _ in EFI_BANDS)
SMOKING_LEVELS = ("never", "ex", "current")


def _demographics() -> tuple[Feature, ...]:
    p = ("person",)
    return (
        Feature("age_years", "aged {value}", p, unit="years", clinical=False,
                direction=_dir(1, 1), constrain=True, minimum=0, maximum=120),
        Feature("female", "female: {value}", p, kind="binary", direction=_dir(1, 0)),
        Feature("ethnic_group", "ethnic group {value}", p, kind="categorical",
                categories=ETHNIC_GROUP_LEVELS),
        Feature("imd_decile", "deprivation decile {value} (1 = most deprived)", p, unit="decile",
                direction=_dir(-1, -1), minimum=1, maximum=10, reads=("person.imd_decile",)),
        Feature("lives_alone", "lives alone: {value}", p, kind="binary", clinical=False,
                modifiable=True, direction=_dir(1, 1)),
        Feature("informal_carer", "has an informal carer: {value}", p, kind="binary",
                clinical=False, modifiable=True, direction=_dir(0, -1)),
    )  # fmt: skip


def _activity() -> tuple[Feature, ...]:
    ae, amb = ("ae_attendance",), ("ambulance_incident",)
    return (
        *_windowed("ae_attendances", _counted("A&E attendance{s} in the last {window}"), ae,
                   "attendances", 1, 1),
        *_windowed("emergency_admissions", _counted("emergency admission{s} in the last {window}"),
                   HOSPITAL, "admissions", 0, 1),
        *_windowed("emergency_bed_days", _counted("day{s} in hospital after emergency admission "
                   "in the last {window}"), HOSPITAL, "days", 0, 1),
        *_windowed("ambulance_callouts", _counted("ambulance call-out{s} in the last {window}"),
                   amb, "call-outs", 1, 1),
        *_windowed("falls", _counted("recorded fall{s} in the last {window}"), FALL_SOURCES,
                   "falls", 1, 1, clinical=False, constrain=True),
        *_windowed("fractures", _counted("fragility fracture{s} recorded in the last {window}"),
                   FRACTURE_SOURCES, "fractures", 1, 1),
        Feature("mental_health_admissions_730d",
                "{value} mental health inpatient stays in the last 2 years", HOSPITAL,
                window_days=730, unit="admissions", direction=_dir(0, 1), minimum=0, maximum=730,
                label_one="{value} mental health inpatient stay in the last 2 years",
                reads=("hospital_episode.main_specialty",)),
    )  # fmt: skip


def _conditions() -> tuple[Feature, ...]:
    gp_and_hospital = ("gp_event", "hospital_episode")
    found = tuple(
        Feature(f"has_{name}", f"{_CONDITION_WORDS[name]} recorded: {{value}}",
                gp_and_hospital, kind="binary", modifiable=name in _MODIFIABLE_CONDITIONS,
                direction=_dir(*_CONDITION_DIRECTIONS[name]))
        for name in CONDITIONS
    )  # fmt: skip
    return (
        *found,
        Feature("tendency_to_fall", "tendency to fall recorded: {value}",
                ("hospital_episode", "ae_attendance"), kind="binary", direction=_dir(1, 1)),
    )  # fmt: skip


def _frailty_and_medicines() -> tuple[Feature, ...]:
    rx = ("prescription",)
    frid = tuple(
        Feature(f"frid_{name}_90d", f"{{value}} {many} issued in the last 3 months",
                rx, window_days=90, unit="medicines", modifiable=True, direction=_dir(1, 0),
                minimum=0, maximum=MAX_MEDICINES,
                label_one=f"{{value}} {one} issued in the last 3 months")
        for name in FRID_CLASSES
        for many, one in [_FRID_WORDS[name]]
    )  # fmt: skip
    return (
        Feature("efi", "electronic frailty index {value}", ("gp_event", "prescription"),
                unit="deficits/36", direction=_dir(1, 1), minimum=0, maximum=1),
        Feature("efi_band", "frailty band {value}", ("gp_event", "prescription"),
                kind="categorical", categories=EFI_BAND_LEVELS),
        Feature("medicines_90d", "{value} different medicines in the last 3 months", rx,
                window_days=90, unit="medicines", modifiable=True, direction=_dir(1, 1),
                minimum=0, maximum=MAX_MEDICINES,
                label_one="{value} medicine in the last 3 months"),
        *frid,
        Feature("frid_classes_90d",
                "{value} classes of falls-risk-increasing drugs in the last 3 months", rx,
                window_days=90, unit="classes", modifiable=True, direction=_dir(1, 0),
                minimum=0, maximum=len(FRID_CLASSES),
                label_one="{value} class of falls-risk-increasing drugs in the last 3 months"),
        Feature("bmi", "body mass index {value}", ("gp_event",), unit="kg/m2",
                direction=_dir(-1, 0), minimum=10, maximum=100,
                label_missing="no body mass index recorded"),
        Feature("smoking_status", "smoking status {value}", ("gp_event",), kind="categorical",
                modifiable=True, categories=SMOKING_LEVELS),
        Feature("heavy_drinking", "heavy drinking recorded: {value}", ("gp_event",),
                kind="binary", modifiable=True, direction=_dir(1, 1)),
    )  # fmt: skip


def _care_and_home() -> tuple[Feature, ...]:
    sc, fire = ("social_care",), ("fire_home_visit",)
    return (
        Feature("home_care_now", "receives home care: {value}", sc, kind="binary",
                clinical=False, direction=_dir(1, 0)),
        Feature("home_care_hours_now", "{value} hours of home care a week", sc,
                unit="hours/week", clinical=False, modifiable=True, minimum=0, maximum=168,
                label_one="{value} hour of home care a week"),
        Feature("telecare_now", "has a telecare alarm: {value}", sc, kind="binary",
                clinical=False, modifiable=True, direction=_dir(1, 0)),
        Feature("reablement_365d", "reablement in the last 12 months: {value}", sc,
                kind="binary", window_days=365, clinical=False, modifiable=True),
        Feature("care_assessment_365d", "social care assessment in the last 12 months: {value}",
                sc, kind="binary", window_days=365, clinical=False),
        Feature("fire_visited", "safe and well visit ever: {value}", fire, kind="binary",
                clinical=False),
        Feature("fire_trip_hazards", "trip hazards at the last home visit: {value}", fire,
                kind="binary", clinical=False, modifiable=True, direction=_dir(1, 0)),
        Feature("fire_smoke_alarm_working", "smoke alarm working at the last home visit: {value}",
                fire, kind="binary", clinical=False, modifiable=True),
        Feature("fire_smoker", "smoker at the last home visit: {value}", fire, kind="binary",
                clinical=False, modifiable=True, direction=_dir(0, 1)),
        Feature("fire_mobility_concern", "mobility concern at the last home visit: {value}", fire,
                kind="binary", clinical=False, direction=_dir(1, 1)),
    )  # fmt: skip


def _fall_proneness() -> tuple[Feature, ...]:
    """What GP and social care records show of gait, balance and falls work-up."""
    gp = ("gp_event",)
    return (
        Feature("gait_balance_problem", "gait or balance problem recorded: {value}", gp,
                kind="binary", modifiable=True, direction=_dir(1, 0)),
        Feature("dizziness_365d", "dizziness recorded in the last 12 months: {value}", gp,
                kind="binary", window_days=365, direction=_dir(1, 0)),
        Feature("falls_assessment_365d",
                "falls risk assessment or falls service referral in the last 12 months: {value}",
                gp, kind="binary", window_days=365, direction=_dir(1, 0)),
        Feature("mobility_equipment", "mobility equipment from social care: {value}",
                ("social_care",), kind="binary", clinical=False, direction=_dir(1, 0)),
    )  # fmt: skip


def _recency_and_completeness() -> tuple[Feature, ...]:
    return (
        Feature("days_since_last_fall", "{value} days since the last recorded fall",
                FALL_SOURCES, unit="days", clinical=False, direction=_dir(-1, -1), minimum=1,
                maximum=MAX_DAYS, label_one="{value} day since the last recorded fall",
                label_missing="no recorded fall"),
        Feature("days_since_last_emergency_admission",
                "{value} days since the last emergency admission", HOSPITAL, unit="days",
                direction=_dir(0, -1), minimum=1, maximum=MAX_DAYS,
                label_one="{value} day since the last emergency admission",
                label_missing="no recorded emergency admission"),
        Feature("has_gp_event_730d", "any GP record in the last 2 years: {value}", ("gp_event",),
                kind="binary", window_days=730),
        Feature("ethnicity_recorded", "ethnicity recorded: {value}", ("person",), kind="binary"),
        Feature("bmi_recorded", "BMI ever recorded: {value}", ("gp_event",), kind="binary"),
        Feature("lookback_days", "{value} days of history available", (), unit="days",
                minimum=0, maximum=730, explain=False,
                label_one="{value} day of history available"),
    )  # fmt: skip


FEATURES: tuple[Feature, ...] = (
    *_demographics(),
    *_activity(),
    *_conditions(),
    *_frailty_and_medicines(),
    *_care_and_home(),
    *_fall_proneness(),
    *_recency_and_completeness(),
)


def feature(name: str) -> Feature:
    """The feature called `name`."""
    for item in FEATURES:
        if item.name == name:
            return item
    raise KeyError(f"no feature named {name} in the feature list")


def feature_names() -> list[str]:
    return [item.name for item in FEATURES]


def feature_list_json() -> str:
    """The feature list as canonical JSON (sorted keys, no spaces)."""
    rows = []
    for item in FEATURES:
        row = asdict(item)
        row["direction"] = dict(sorted(item.direction.items()))
        rows.append(row)
    return json.dumps(rows, sort_keys=True, separators=(",", ":"))


def feature_list_fingerprint() -> str:
    """sha256 of the feature list's canonical JSON: changes whenever any feature changes."""
    return hashlib.sha256(feature_list_json().encode()).hexdigest()
