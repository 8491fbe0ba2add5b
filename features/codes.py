"""The concepts the features and outcomes read, and the codes of each, from the code lists.

The concept names (conditions, frailty deficits, drug classes, fracture sites) are fixed
here, because the feature list is built from them. Their codes are data: `Codes` is built
from a `codelists.CodeLists` (the packaged lists, or a site's own folder) at the entry point
and passed down. The lists and their sources are described in codelists/lists/index.csv.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from codelists import CodeListError, CodeLists, snomed_valid
from features.contract import NHS_NUMBER_TEXT

__all__ = ["Codes", "nhs_number_valid", "packaged_codes", "snomed_valid"]

CONDITIONS: tuple[str, ...] = (
    "dementia", "parkinsons", "stroke", "multiple_sclerosis", "urinary_incontinence",
    "visual_impairment", "depression", "heart_failure", "copd", "ckd", "diabetes",
    "complicated_diabetes", "liver_disease", "cancer", "hemiplegia", "osteoporosis",
)  # fmt: skip

# electronic Frailty Index: 36 deficits (Clegg et al. 2016). Polypharmacy is derived from
# prescriptions (5 or more medicines), the rest from codes.
EFI_DEFICITS: tuple[str, ...] = (
    "activity_limitation", "anaemia", "arthritis", "atrial_fibrillation",
    "cerebrovascular_disease", "chronic_kidney_disease", "diabetes", "dizziness", "dyspnoea",
    "falls", "foot_problems", "fragility_fracture", "hearing_impairment", "heart_failure",
    "heart_valve_disease", "housebound", "hypertension", "hypotension_syncope",
    "ischaemic_heart_disease", "memory_and_cognitive_problems",
    "mobility_and_transfer_problems", "osteoporosis", "parkinsonism_and_tremor",
    "peptic_ulcer", "peripheral_vascular_disease", "polypharmacy", "requirement_for_care",
    "respiratory_disease", "skin_ulcer", "sleep_disturbance", "social_vulnerability",
    "thyroid_disease", "urinary_incontinence", "urinary_system_disease", "visual_impairment",
    "weight_loss_and_anorexia",
)  # fmt: skip
DERIVED_DEFICITS = frozenset({"polypharmacy"})
EFI_DENOMINATOR = 36
POLYPHARMACY_MEDICINES = 5
EFI_BANDS: tuple[tuple[str, float], ...] = (
    ("fit", 0.12),
    ("mild", 0.24),
    ("moderate", 0.36),
    ("severe", 1.0),
)  # upper bounds, inclusive

FRACTURE_SITES: tuple[str, ...] = ("hip", "wrist", "vertebra", "pelvis", "proximal_humerus")
AMBULANCE_FALL_CATEGORIES: frozenset[str] = frozenset({"fall", "long_lie"})
SMOKING_STATUSES: tuple[str, ...] = ("current", "ex", "never")
FRAILTY_DIAGNOSES: tuple[str, ...] = ("moderate", "severe")

# falls-risk-increasing drug classes, each a list of BNF prefixes
FRID_CLASSES: tuple[str, ...] = (
    "antidepressants", "hypnotics_anxiolytics", "antipsychotics", "antihypertensives",
    "antiepileptics", "antiparkinson", "sedating_antihistamines", "opioids",
    "urinary_antimuscarinics",
)  # fmt: skip


@dataclass(frozen=True)
class Codes:
    """The codes of every concept the features and outcomes read, from one set of lists."""

    fall_snomed: frozenset[str]
    fall_icd10_prefixes: tuple[str, ...]  # W00-W19
    fall_icd10_optional_exclusions: tuple[str, ...]  # W02, W12 and W15 may be left out
    fall_unspecified_icd10: str  # a hospital record's code for a fall coded in SNOMED CT only
    fragility_fracture_icd10: Mapping[str, tuple[str, ...]]  # by site
    tendency_to_fall_icd10: tuple[str, ...]  # a predictor, never an outcome
    mental_health_specialties: frozenset[str]
    conditions: Mapping[str, tuple[frozenset[str], tuple[str, ...]]]  # (SNOMED, ICD-10)
    efi_deficits: Mapping[str, frozenset[str]]
    bmi: frozenset[str]
    alcohol_units: frozenset[str]
    heavy_drinker: frozenset[str]
    smoking_status: Mapping[str, str]  # SNOMED CT -> current, ex or never
    frailty_diagnosis: Mapping[str, str]  # SNOMED CT -> moderate or severe
    gait_balance: frozenset[str]  # gait or balance problems
    falls_assessment: frozenset[str]  # a falls risk assessment or falls service referral
    frid_bnf_prefixes: Mapping[str, tuple[str, ...]]
    digest: str  # of the lists these came from

    @classmethod
    def from_lists(cls, lists: CodeLists) -> Codes:
        """The concepts' codes as `lists` gives them."""
        return cls(
            fall_snomed=lists.snomed("fall_snomed"),
            fall_icd10_prefixes=lists.icd10_prefixes("fall_icd10"),
            fall_icd10_optional_exclusions=lists.icd10_prefixes("fall_icd10_optional"),
            fall_unspecified_icd10=_one(lists, "fall_unspecified_icd10"),
            fragility_fracture_icd10={
                site: lists.icd10_prefixes(f"fracture_{site}_icd10") for site in FRACTURE_SITES
            },
            tendency_to_fall_icd10=lists.icd10_prefixes("tendency_to_fall_icd10"),
            mental_health_specialties=frozenset(lists.codes("mental_health_specialties")),
            conditions={
                name: (
                    lists.snomed(f"condition_{name}"),
                    lists.icd10_prefixes(f"condition_{name}_icd10"),
                )
                for name in CONDITIONS
            },
            efi_deficits={
                name: frozenset() if name in DERIVED_DEFICITS else lists.snomed(f"efi_{name}")
                for name in EFI_DEFICITS
            },
            bmi=lists.snomed("bmi"),
            alcohol_units=lists.snomed("alcohol_units"),
            heavy_drinker=lists.snomed("heavy_drinker"),
            smoking_status=_by_code(lists, "smoking", SMOKING_STATUSES),
            frailty_diagnosis=_by_code(lists, "frailty", FRAILTY_DIAGNOSES),
            gait_balance=lists.snomed("gait_balance"),
            falls_assessment=lists.snomed("falls_assessment"),
            frid_bnf_prefixes={name: lists.bnf(f"frid_{name}") for name in FRID_CLASSES},
            digest=lists.digest,
        )

    @property
    def fragility_fracture_prefixes(self) -> tuple[str, ...]:
        return tuple(c for site in FRACTURE_SITES for c in self.fragility_fracture_icd10[site])

    @property
    def hip_fracture_prefixes(self) -> tuple[str, ...]:
        return self.fragility_fracture_icd10["hip"]

    @property
    def dizziness(self) -> frozenset[str]:
        return self.efi_deficits["dizziness"]

    def all_snomed(self) -> Iterable[str]:
        """Every SNOMED CT concept any feature or outcome reads."""
        yield from self.fall_snomed
        for snomed, _ in self.conditions.values():
            yield from snomed
        for codes in self.efi_deficits.values():
            yield from codes
        yield from (*self.bmi, *self.alcohol_units, *self.heavy_drinker)
        yield from self.smoking_status
        yield from self.frailty_diagnosis
        yield from (*self.gait_balance, *self.falls_assessment)


def _one(lists: CodeLists, name: str) -> str:
    """The code of a list that must hold exactly one."""
    codes = lists.codes(name)
    if len(codes) != 1:
        raise CodeListError(
            f"{lists.folder / (name + '.csv')}: holds {len(codes)} codes; it must hold one"
        )
    return codes[0]


def _by_code(lists: CodeLists, stem: str, levels: tuple[str, ...]) -> dict[str, str]:
    """Each code of the lists `<stem>_<level>` mapped to its level (the lists are disjoint)."""
    return {code: level for level in levels for code in lists.codes(f"{stem}_{level}")}


@cache
def packaged_codes() -> Codes:
    """The codes of the packaged lists (read on first use, never on import)."""
    return Codes.from_lists(CodeLists.load())


def nhs_number_valid(value: str) -> bool:
    """True when `value` is an NHS number: 10 digits (optionally spaced 3-3-4 with spaces or
    hyphens) whose last is the modulus 11 check digit of the first nine."""
    if not re.fullmatch(NHS_NUMBER_TEXT, value):
        return False
    digits = [int(d) for d in value if d.isdigit()]
    total = sum(weight * d for weight, d in zip(range(10, 1, -1), digits[:9], strict=True))
    return (11 - total % 11) % 11 == digits[9]
