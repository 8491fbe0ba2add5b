"""Clinical code lists used by the outcome definitions and the features.

The outcome lists (falls, fragility fractures) follow ../shared/reference/clinical.md.
The condition and frailty-deficit lists are representative SNOMED CT concepts, one or a
few per concept, not a maintained reference set: a real deployment replaces them with the
current eFI and QOF reference sets, keeping the concept names. Every SNOMED CT identifier
here carries a valid Verhoeff check digit (tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from features.contract import NHS_NUMBER_TEXT

# --- outcomes -------------------------------------------------------------------------

FALL_SNOMED: frozenset[str] = frozenset(
    {
        "1912002", "161898004", "217082002", "217154006", "279992002",
        "298343000", "298344006", "247541000000106", "248451000000109",
    }
)  # fmt: skip

# ICD-10 external causes of a fall, W00-W19. W02, W12 and W15 may be left out by setting.
FALL_ICD10_PREFIXES: tuple[str, ...] = tuple(f"W{n:02d}" for n in range(0, 20))
FALL_ICD10_OPTIONAL_EXCLUSIONS: tuple[str, ...] = ("W02", "W12", "W15")

FRAGILITY_FRACTURE_ICD10: dict[str, tuple[str, ...]] = {
    "hip": ("S720", "S721", "S722"),
    "wrist": ("S525", "S526"),
    "vertebra": ("S220", "S320"),
    "pelvis": tuple(f"S32{n}" for n in range(1, 9)),
    "proximal_humerus": ("S422",),
}
FRAGILITY_FRACTURE_PREFIXES: tuple[str, ...] = tuple(
    code for codes in FRAGILITY_FRACTURE_ICD10.values() for code in codes
)
HIP_FRACTURE_PREFIXES: tuple[str, ...] = FRAGILITY_FRACTURE_ICD10["hip"]
TENDENCY_TO_FALL_ICD10 = "R296"  # a predictor, never an outcome

AMBULANCE_FALL_CATEGORIES: frozenset[str] = frozenset({"fall", "long_lie"})
MENTAL_HEALTH_SPECIALTIES: frozenset[str] = frozenset({"710", "711", "712", "713", "715"})

# --- conditions: SNOMED CT concepts in the GP record, ICD-10 prefixes in hospital data -----

CONDITIONS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "dementia": (frozenset({"52448006"}), ("F00", "F01", "F02", "F03", "G30")),
    "parkinsons": (frozenset({"49049000"}), ("G20",)),
    "stroke": (frozenset({"230690007"}), ("I61", "I63", "I64")),
    "multiple_sclerosis": (frozenset({"24700007"}), ("G35",)),
    "urinary_incontinence": (frozenset({"165232002"}), ("R32", "N393", "N394")),
    "visual_impairment": (frozenset({"397540003"}), ("H54",)),
    "depression": (frozenset({"35489007"}), ("F32", "F33")),
    "heart_failure": (frozenset({"84114007"}), ("I50",)),
    "copd": (frozenset({"13645005"}), ("J44",)),
    "ckd": (frozenset({"709044004"}), ("N18",)),
    "diabetes": (frozenset({"73211009"}), ("E10", "E11", "E14")),
    "complicated_diabetes": (
        frozenset({"127013003", "4855003", "230572002"}),
        ("E102", "E103", "E104", "E112", "E113", "E114"),
    ),
    "liver_disease": (frozenset({"328383001"}), ("K70", "K72", "K74")),
    "cancer": (frozenset({"363346000"}), tuple(f"C{n:02d}" for n in range(0, 98))),
    "hemiplegia": (frozenset({"50582007"}), ("G81",)),
    "osteoporosis": (frozenset({"64859006"}), ("M80", "M81")),
}

# --- electronic Frailty Index: 36 deficits (Clegg et al. 2016) ----------------------------
# Polypharmacy is derived from prescriptions (5 or more medicines), the rest from codes.

EFI_DEFICITS: dict[str, frozenset[str]] = {
    "activity_limitation": frozenset({"248536006"}),
    "anaemia": frozenset({"271737000"}),
    "arthritis": frozenset({"396275006", "69896004"}),
    "atrial_fibrillation": frozenset({"49436004"}),
    "cerebrovascular_disease": frozenset({"230690007"}),
    "chronic_kidney_disease": frozenset({"709044004"}),
    "diabetes": frozenset({"73211009"}),
    "dizziness": frozenset({"404640003"}),
    "dyspnoea": frozenset({"267036007"}),
    "falls": FALL_SNOMED,
    "foot_problems": frozenset({"371087003"}),
    "fragility_fracture": frozenset({"5913000"}),
    "hearing_impairment": frozenset({"15188001"}),
    "heart_failure": frozenset({"84114007"}),
    "heart_valve_disease": frozenset({"368009"}),
    "housebound": frozenset({"160689007"}),
    "hypertension": frozenset({"38341003"}),
    "hypotension_syncope": frozenset({"45007003", "271594007"}),
    "ischaemic_heart_disease": frozenset({"414545008", "22298006"}),
    "memory_and_cognitive_problems": frozenset({"386807006", "52448006"}),
    "mobility_and_transfer_problems": frozenset({"282145008"}),
    "osteoporosis": frozenset({"64859006"}),
    "parkinsonism_and_tremor": frozenset({"49049000", "26079004"}),
    "peptic_ulcer": frozenset({"13200003"}),
    "peripheral_vascular_disease": frozenset({"400047006"}),
    "polypharmacy": frozenset(),
    "requirement_for_care": frozenset({"133932002"}),
    "respiratory_disease": frozenset({"13645005", "195967001"}),
    "skin_ulcer": frozenset({"399912005"}),
    "sleep_disturbance": frozenset({"193462001"}),
    "social_vulnerability": frozenset({"105529008"}),
    "thyroid_disease": frozenset({"40930008"}),
    "urinary_incontinence": frozenset({"165232002"}),
    "urinary_system_disease": frozenset({"68566005"}),
    "visual_impairment": frozenset({"397540003"}),
    "weight_loss_and_anorexia": frozenset({"89362005"}),
}
EFI_DENOMINATOR = 36
POLYPHARMACY_MEDICINES = 5
EFI_BANDS: tuple[tuple[str, float], ...] = (
    ("fit", 0.12),
    ("mild", 0.24),
    ("moderate", 0.36),
    ("severe", 1.0),
)  # upper bounds, inclusive

# --- observations and lifestyle -----------------------------------------------------------

BMI_SNOMED = "60621009"
ALCOHOL_UNITS_SNOMED = "1082641000000106"
HEAVY_DRINKER_SNOMED = "86933000"
SMOKING_STATUS_SNOMED: dict[str, str] = {
    "77176002": "current",
    "8517006": "ex",
    "266919005": "never",
}
FRAILTY_DIAGNOSIS_SNOMED: dict[str, str] = {
    "925791000000100": "moderate",
    "925861000000102": "severe",
}

# --- records of fall-proneness ------------------------------------------------------------
# Gait or balance problems: abnormal gait, abnormal gait due to impaired balance, impairment
# of balance, unsteady when walking.
GAIT_BALANCE_SNOMED: frozenset[str] = frozenset({"22325002", "431524008", "387603000", "394616008"})
# A falls risk assessment or a referral to a falls service.
FALLS_ASSESSMENT_SNOMED: frozenset[str] = frozenset({"414191008", "408289007"})
DIZZINESS_SNOMED: frozenset[str] = EFI_DEFICITS["dizziness"]

# --- medicines: BNF paragraph prefixes of falls-risk-increasing drug classes -------------

FRID_BNF_PREFIXES: dict[str, tuple[str, ...]] = {
    "antidepressants": ("0403",),
    "hypnotics_anxiolytics": ("0401",),
    "antipsychotics": ("0402",),
    "antihypertensives": ("0202", "0204", "0205", "0206"),
    "antiepileptics": ("0408",),
    "antiparkinson": ("0409",),
    "sedating_antihistamines": ("0304",),
    "opioids": ("040702",),
    "urinary_antimuscarinics": ("070402",),
}

# --- SNOMED CT check digit ---------------------------------------------------------------

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def snomed_valid(code: str) -> bool:
    """True when `code` is 6-18 digits with a valid Verhoeff check digit."""
    if not (code.isdigit() and 6 <= len(code) <= 18 and code[0] != "0"):
        return False
    check = 0
    for i, ch in enumerate(reversed(code)):
        check = _D[check][_P[i % 8][int(ch)]]
    return check == 0


def nhs_number_valid(value: str) -> bool:
    """True when `value` is an NHS number: 10 digits (optionally spaced 3-3-4 with spaces or
    hyphens) whose last is the modulus 11 check digit of the first nine."""
    if not re.fullmatch(NHS_NUMBER_TEXT, value):
        return False
    digits = [int(d) for d in value if d.isdigit()]
    total = sum(weight * d for weight, d in zip(range(10, 1, -1), digits[:9], strict=True))
    return (11 - total % 11) % 11 == digits[9]


def all_snomed_codes() -> Iterable[str]:
    """Every SNOMED CT identifier named in this module."""
    yield from FALL_SNOMED
    for snomed, _ in CONDITIONS.values():
        yield from snomed
    for codes in EFI_DEFICITS.values():
        yield from codes
    yield from (BMI_SNOMED, ALCOHOL_UNITS_SNOMED, HEAVY_DRINKER_SNOMED)
    yield from SMOKING_STATUS_SNOMED
    yield from FRAILTY_DIAGNOSIS_SNOMED
    yield from GAIT_BALANCE_SNOMED
    yield from FALLS_ASSESSMENT_SNOMED
