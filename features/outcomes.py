"""The outcome set: the one place an outcome is defined.

An `Outcome` says what is predicted (its label function and horizon), for whom (its cohort rule
and the one sentence that words it), how its scores are banded by default, what the capacity
view counts, and what its model is registered as. Training, evaluation, the promotion gate, serving,
risk registers, pages and the command line read outcomes only through an `OutcomeSet`.

The product's outcomes are `FALLS` and `COMPLEX_DEPENDENCY` (`PRODUCT`). More can be added
without editing any other file: a module that defines `OUTCOMES` (a tuple of `Outcome`), named
in the setting CARERISK_OUTCOME_MODULES (comma-separated module names, read by the entry point:
carerisk/settings.py), is read by `outcome_set`, and `carerisk serve` passes the setting on
to the server (serving/config.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import import_module
from typing import TYPE_CHECKING

from codelists import CodeListError, CodeLists
from features.bands import RiskBands
from features.labels import complex_dependency_outcome, falls_outcome

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from features.definitions import Sources
    from features.labels import LabelSettings

MODEL_PREFIX = "carerisk-"
# http://terminology.hl7.org/CodeSystem/risk-probability, less "certain" (which would claim the
# event will happen, which no band means) and "negligible"
FHIR_RISK_CODES = ("low", "moderate", "high")

# person_id of everyone with an outcome event in [day, end) (events after a death not counted):
# label(src, day, end, settings). See features/labels.py.
LabelFunction = Callable[["Sources", date, date, "LabelSettings"], "ir.Table"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class UnknownOutcome(ValueError):
    """No outcome of that name is registered; the message lists those that are."""


@dataclass(frozen=True)
class Cohort:
    """Who an outcome's model applies to at an index date D.

    Always: registered, born before D and alive at the end of D (a death on or before D leaves
    a person out: they have no follow-up). Then: aged `min_age` or over at D, and, with
    `exclude_care_home`, not in residential or nursing care at D. `words` is the one sentence
    that says so, used in refusals, pages, model cards and reports.
    """

    min_age: int
    words: str
    exclude_care_home: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_age <= 120:
            raise ValueError(f"a cohort's min_age must be 0 to 120, not {self.min_age}")
        if not self.words.strip():
            raise ValueError("a cohort needs its rule in words")


@dataclass(frozen=True)
class Outcome:
    name: str  # python-style: falls, complex_dependency (also the cohort flag's suffix)
    title: str  # plain title: "Falls"
    predicts: str  # what a score is the chance of: "a recorded fall within 12 months"
    horizon_months: int
    cohort: Cohort
    label: LabelFunction
    bands: RiskBands  # default bands; the training config may override them
    capacity_unit: str  # what the capacity view counts: "homes" visited, "people" reviewed
    monthly_capacity: int | None = None  # a typical month's capacity, for the report
    # SNOMED CT (code, display) of the outcome, when one fits: a RiskAssessment's
    # prediction.outcome (serving/fhir.py); filled from the code list `snomed_list`
    snomed: tuple[str, str] | None = field(default=None, compare=False)
    # contract tables its label cannot be built without: `train` refuses a store whose source
    # lacks one (features.coverage)
    needs: tuple[str, ...] = ()
    # SNOMED CT (code, display) of being at risk of the outcome, when one fits: a CDS Hooks
    # card's topic and a referral's reason; filled from the code list `at_risk_list`
    at_risk_finding: tuple[str, str] | None = field(default=None, compare=False)
    # the code lists (one concept each) the two codings above are read from by `with_codings`
    # (the codings are how an outcome is written out, not part of what it is: not compared)
    snomed_list: str = ""
    at_risk_list: str = ""
    # band label -> FHIR risk-probability code (low, moderate, high): a RiskAssessment's
    # qualitativeRisk (serving/fhir.py); a band not listed is said in text only
    fhir_risk: tuple[tuple[str, str], ...] = ()
    at_risk_bands: int = 2  # how many of the highest bands a register counts as at risk
    # the services a person may be referred to under this outcome (HOME_SAFETY_CHECK)
    referral_services: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"outcome name {self.name!r} must be lower case words joined by underscores"
            )
        if self.horizon_months < 1:
            raise ValueError(f"outcome {self.name}: horizon_months must be at least 1")
        unknown = sorted({code for _, code in self.fhir_risk} - set(FHIR_RISK_CODES))
        if unknown:
            raise ValueError(f"outcome {self.name}: {unknown} are not FHIR risk-probability codes")
        if not 1 <= self.at_risk_bands <= len(self.bands.labels):
            raise ValueError(
                f"outcome {self.name}: at_risk_bands must be 1 to {len(self.bands.labels)}"
            )

    def with_codings(self, lists: CodeLists) -> Outcome:
        """This outcome with its SNOMED CT codings read from `lists` (`snomed_list`,
        `at_risk_list`); a folder without a named list is refused by `CodeLists.info`."""
        snomed = _concept(lists, self.snomed_list) if self.snomed_list else self.snomed
        at_risk = self.at_risk_finding
        if self.at_risk_list:
            at_risk = _concept(lists, self.at_risk_list)
        return replace(self, snomed=snomed, at_risk_finding=at_risk)

    def risk_code(self, band: str) -> str | None:
        """The FHIR risk-probability code of a band, or None when it has none."""
        return dict(self.fhir_risk).get(band)

    def at_risk(self, bands: RiskBands) -> tuple[str, ...]:
        """The labels of `bands` (the served model's) that a register counts as at risk: the
        `at_risk_bands` highest, highest first."""
        return bands.highest(self.at_risk_bands)

    @property
    def cli_name(self) -> str:
        """The command-line spelling: complex-dependency."""
        return self.name.replace("_", "-")

    @property
    def model_name(self) -> str:
        """The registered model, its MLflow experiment and its BentoML model: carerisk-falls."""
        return MODEL_PREFIX + self.cli_name

    @property
    def cohort_column(self) -> str:
        """The snapshot's flag of membership of this outcome's cohort."""
        return f"cohort_{self.name}"

    def outside_cohort(self) -> str:
        """Why a person outside the cohort gets no score."""
        return f"the {self.title.lower()} model applies only to people {self.cohort.words}"


@dataclass(frozen=True)
class OutcomeSet:
    """The registered outcomes, in order; looked up by either spelling."""

    outcomes: tuple[Outcome, ...]

    def __post_init__(self) -> None:
        names = [o.name for o in self.outcomes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"outcome {', '.join(twice)} is registered twice")

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outcomes)

    def get(self, spelling: str) -> Outcome:
        """The outcome called `spelling` (falls, complex_dependency or complex-dependency)."""
        name = spelling.strip().lower().replace("-", "_")
        for item in self.outcomes:
            if item.name == name:
                return item
        known = ", ".join(o.cli_name for o in self.outcomes)
        raise UnknownOutcome(f"unknown outcome {spelling!r}; choose one of {known}")

    def by_model_name(self, model_name: str) -> Outcome:
        """The outcome whose registered model is `model_name` (carerisk-falls)."""
        for item in self.outcomes:
            if item.model_name == model_name:
                return item
        known = ", ".join(o.model_name for o in self.outcomes)
        raise UnknownOutcome(f"no outcome's model is called {model_name!r}; known: {known}")

    def with_codings(self, lists: CodeLists) -> OutcomeSet:
        """Every outcome with its SNOMED CT codings read from `lists`."""
        return OutcomeSet(tuple(o.with_codings(lists) for o in self.outcomes))

    def with_modules(self, modules: Sequence[str]) -> OutcomeSet:
        """This set and the `OUTCOMES` of each named module, in order."""
        extra: list[Outcome] = []
        for module in modules:
            extra += _module_outcomes(module)
        return OutcomeSet((*self.outcomes, *extra)) if extra else self


def _concept(lists: CodeLists, name: str) -> tuple[str, str]:
    """The (code, term) of a code list that must hold one SNOMED CT concept."""
    info = lists.info(name)
    if info.system != "snomed" or info.size != 1:
        raise CodeListError(
            f"{lists.folder / (name + '.csv')}: an outcome's coding needs one SNOMED CT "
            f"concept; the list holds {info.size} {info.system} code(s)"
        )
    return info.codes[0], info.terms[0]


def _module_outcomes(module: str) -> list[Outcome]:
    try:
        found = getattr(import_module(module), "OUTCOMES", None)
    except ImportError as error:
        raise UnknownOutcome(f"outcome module {module!r} cannot be imported: {error}") from error
    if not isinstance(found, tuple) or not all(isinstance(o, Outcome) for o in found):
        raise UnknownOutcome(f"outcome module {module} must define OUTCOMES, a tuple of Outcome")
    return list(found)


# --- the product's outcomes ------------------------------------------------------------------

# the fire and rescue service's home safety and falls check, the one service referred to
HOME_SAFETY_CHECK = "home_safety_falls_check"

# one band set: the same labels for both outcomes, each with its own cut points
BAND_LABELS: tuple[str, ...] = ("low", "moderate", "high", "very high")
# the bands as FHIR risk-probability codes: very high is high (the code system's highest short
# of certain)
BAND_FHIR_RISK = (("low", "low"), ("moderate", "moderate"), ("high", "high"), ("very high", "high"))

FALLS = Outcome(
    name="falls",
    title="Falls",
    predicts="a recorded fall within 12 months",
    horizon_months=12,
    cohort=Cohort(
        min_age=65, words="aged 65 or over, alive and not living in a care home at the index date"
    ),
    label=falls_outcome,
    bands=RiskBands((0.05, 0.10, 0.20), BAND_LABELS),
    capacity_unit="homes",
    monthly_capacity=100,
    needs=("ae_attendance", "hospital_episode"),
    snomed_list="outcome_falls",
    at_risk_list="at_risk_falls",
    fhir_risk=BAND_FHIR_RISK,
    referral_services=(HOME_SAFETY_CHECK,),
)

COMPLEX_DEPENDENCY = Outcome(
    name="complex_dependency",
    title="Complex dependency",
    predicts="complex dependency (high-intensity care, a care-home move, three or more emergency "
    "admissions or a stay over 21 days) within 12 months",
    horizon_months=12,
    cohort=Cohort(
        min_age=18, words="aged 18 or over, alive and not living in a care home at the index date"
    ),
    label=complex_dependency_outcome,
    bands=RiskBands((0.05, 0.15, 0.30), BAND_LABELS),
    capacity_unit="people",
    needs=("social_care", "hospital_episode"),
    fhir_risk=BAND_FHIR_RISK,
)

PRODUCT = OutcomeSet((FALLS, COMPLEX_DEPENDENCY))


def outcome_set(modules: Sequence[str] = (), lists: CodeLists | None = None) -> OutcomeSet:
    """The product's outcomes and those of the named modules (read at the entry point), with
    their SNOMED CT codings from `lists` when given."""
    registry = PRODUCT.with_modules(modules)
    return registry.with_codings(lists) if lists is not None else registry
