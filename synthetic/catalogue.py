"""Code vocabularies the synthetic records draw from (all built from features.codes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features import codes

# --- medicines: (BNF code, generic name, FRID?) ------------------------------------------
MEDICINES: tuple[tuple[str, str, bool], ...] = (
    ("0403030Q0", "sertraline", True),
    ("0401010Z0", "zopiclone", True),
    ("0402010AB", "quetiapine", True),
    ("0206020A0", "amlodipine", True),
    ("0205051R0", "ramipril", True),
    ("0202010B0", "bendroflumethiazide", True),
    ("0204000H0", "bisoprolol", True),
    ("0408010AH", "levetiracetam", True),
    ("0409010N0", "co-careldopa", True),
    ("0304010G0", "chlorphenamine", True),
    ("040702040", "codeine phosphate", True),
    ("0704020P0", "oxybutynin", True),
    ("0202020L0", "furosemide", True),
    ("0601022B0", "metformin", False),
    ("0212000B0", "atorvastatin", False),
    ("0301011R0", "salbutamol", False),
    ("0301020Q0", "tiotropium", False),
    ("0602010V0", "levothyroxine", False),
    ("0103050P0", "omeprazole", False),
    ("0606020A0", "alendronic acid", False),
    ("0411000D0", "donepezil", False),
    ("0407010H0", "paracetamol", False),
    ("0209000A0", "aspirin", False),
    ("0208020Z0", "apixaban", False),
    ("0501013B0", "amoxicillin", False),
    ("0703021Q0", "desogestrel", False),
    ("1302011C0", "emollient cream", False),
)
MED_INDEX = {name: i for i, (_, name, _) in enumerate(MEDICINES)}
FRID_MASK = np.array([frid for _, _, frid in MEDICINES])

# medicines started for a diagnosed condition: (condition, medicine, chance)
CONDITION_MEDICINES: tuple[tuple[str, str, float], ...] = (
    ("depression", "sertraline", 0.6),
    ("dementia", "donepezil", 0.5),
    ("dementia", "quetiapine", 0.15),
    ("parkinsons", "co-careldopa", 0.9),
    ("stroke", "aspirin", 0.7),
    ("stroke", "atorvastatin", 0.7),
    ("stroke", "levetiracetam", 0.1),
    ("heart_failure", "furosemide", 0.8),
    ("heart_failure", "bisoprolol", 0.7),
    ("heart_failure", "ramipril", 0.6),
    ("copd", "salbutamol", 0.9),
    ("copd", "tiotropium", 0.5),
    ("diabetes", "metformin", 0.8),
    ("diabetes", "atorvastatin", 0.6),
    ("ckd", "ramipril", 0.4),
    ("urinary_incontinence", "oxybutynin", 0.35),
    ("osteoporosis", "alendronic acid", 0.7),
    ("multiple_sclerosis", "levetiracetam", 0.2),
    ("cancer", "codeine phosphate", 0.3),
)
# medicines started for a frailty deficit: (deficit, medicine, chance)
DEFICIT_MEDICINES: tuple[tuple[str, str, float], ...] = (
    ("hypertension", "amlodipine", 0.7),
    ("hypertension", "bendroflumethiazide", 0.35),
    ("hypertension", "ramipril", 0.4),
    ("arthritis", "paracetamol", 0.6),
    ("arthritis", "codeine phosphate", 0.25),
    ("sleep_disturbance", "zopiclone", 0.4),
    ("atrial_fibrillation", "apixaban", 0.8),
    ("atrial_fibrillation", "bisoprolol", 0.5),
    ("thyroid_disease", "levothyroxine", 0.9),
    ("peptic_ulcer", "omeprazole", 0.9),
    ("ischaemic_heart_disease", "aspirin", 0.6),
    ("ischaemic_heart_disease", "atorvastatin", 0.7),
    ("dizziness", "chlorphenamine", 0.1),
    ("skin_ulcer", "emollient cream", 0.5),
)

# --- frailty deficits accumulated from latent frailty (those not tied to a condition) -----
CONDITION_DEFICITS = {
    "cerebrovascular_disease",
    "chronic_kidney_disease",
    "diabetes",
    "heart_failure",
    "memory_and_cognitive_problems",
    "parkinsonism_and_tremor",
    "respiratory_disease",
    "urinary_incontinence",
    "visual_impairment",
    "osteoporosis",
    "falls",
    "polypharmacy",
}
GENERIC_DEFICITS: tuple[str, ...] = tuple(
    name for name in codes.EFI_DEFICITS if name not in CONDITION_DEFICITS
)
# common deficits come first in a person's order of accrual
DEFICIT_WEIGHT = {
    "hypertension": 6.0,
    "arthritis": 4.0,
    "hearing_impairment": 2.5,
    "dyspnoea": 2.0,
    "atrial_fibrillation": 1.5,
    "ischaemic_heart_disease": 1.5,
    "sleep_disturbance": 1.5,
    "dizziness": 1.5,
    "foot_problems": 1.5,
    "thyroid_disease": 1.2,
}


def _valid_snomed(base: str) -> str:
    for digit in "0123456789":
        if codes.snomed_valid(base + digit):
            return base + digit
    raise ValueError(base)


def _other_snomed(count: int) -> tuple[str, ...]:
    """Plausible SNOMED CT identifiers (valid check digit) that no code list names."""
    known = set(codes.all_snomed_codes())
    rng = np.random.default_rng(20240401)
    out: list[str] = []
    while len(out) < count:
        base = str(int(rng.integers(10_000_00, 99_999_999))) + "00"
        code = _valid_snomed(base)
        if code not in known and code not in out:
            out.append(code)
    return tuple(out)


OTHER_SNOMED: tuple[str, ...] = _other_snomed(40)


@dataclass(frozen=True)
class Vocab:
    """A list of strings and the position of each (records store positions)."""

    values: tuple[str, ...]

    def index(self, value: str) -> int:
        return self.values.index(value)

    def indices(self, values: tuple[str, ...] | list[str]) -> np.ndarray:
        return np.array([self.values.index(v) for v in values], dtype=np.int32)


def _snomed_vocab() -> Vocab:
    values: list[str] = []
    for name in codes.CONDITIONS:
        values.extend(sorted(codes.CONDITIONS[name][0]))
    for name in codes.EFI_DEFICITS:
        values.extend(sorted(codes.EFI_DEFICITS[name]))
    values.extend(sorted(codes.FALL_SNOMED))
    values.extend([codes.BMI_SNOMED, codes.ALCOHOL_UNITS_SNOMED, codes.HEAVY_DRINKER_SNOMED])
    values.extend(codes.SMOKING_STATUS_SNOMED)
    values.extend(codes.FRAILTY_DIAGNOSIS_SNOMED)
    values.extend(sorted(codes.GAIT_BALANCE_SNOMED))
    values.extend(sorted(codes.FALLS_ASSESSMENT_SNOMED))
    values.extend(OTHER_SNOMED)
    return Vocab(tuple(dict.fromkeys(values)))


SNOMED = _snomed_vocab()

# --- ICD-10 --------------------------------------------------------------------------------
FALL_CAUSES: tuple[str, ...] = (
    "W010",
    "W01X",
    "W060",
    "W06X",
    "W100",
    "W10X",
    "W180",
    "W18X",
    "W190",
    "W19X",
    "W050",
    "W080",
    "W110",
    "W130",
)  # fmt: skip  (W02, W12 and W15 are never written: some indicators leave them out)
FALL_CAUSE_WEIGHTS = np.array([10, 6, 4, 2, 4, 2, 6, 3, 8, 12, 1, 1, 1, 1], dtype=float)
HIP_FRACTURES: tuple[str, ...] = ("S720", "S721", "S722")
OTHER_FRACTURES: tuple[str, ...] = ("S525", "S526", "S220", "S320", "S321", "S324", "S422")
FALL_INJURIES: tuple[str, ...] = ("S060", "S099", "T140", "S700", "S300", "S400", "S809")
OTHER_CAUSES: tuple[str, ...] = ("W220", "W26X", "X590", "W540", "V892", "X500")
ACUTE_DIAGNOSES: tuple[str, ...] = (
    "J189", "N390", "R074", "R060", "R55", "K590", "L039", "R51", "J22", "A099", "R104",
    "I480", "E86", "R69X", "Z751",
)  # fmt: skip
ELECTIVE_DIAGNOSES: tuple[str, ...] = (
    "H251", "M170", "M161", "K409", "N40", "Z511", "K802", "D126",
)  # fmt: skip


def _condition_icd() -> dict[str, str]:
    return {name: prefixes[0] if len(prefixes[0]) == 4 else prefixes[0] + "9"
            for name, (_, prefixes) in codes.CONDITIONS.items()}  # fmt: skip


CONDITION_ICD = {
    **_condition_icd(),
    "dementia": "F039",
    "stroke": "I639",
    "urinary_incontinence": "R32",
    "visual_impairment": "H547",
    "ckd": "N184",
    "diabetes": "E119",
    "liver_disease": "K703",
    "cancer": "C189",
    "hemiplegia": "G819",
    "osteoporosis": "M819",
}

ICD = Vocab(
    tuple(
        dict.fromkeys(
            (
                *FALL_CAUSES,
                *HIP_FRACTURES,
                *OTHER_FRACTURES,
                *FALL_INJURIES,
                *OTHER_CAUSES,
                *ACUTE_DIAGNOSES,
                *ELECTIVE_DIAGNOSES,
                *CONDITION_ICD.values(),
                codes.TENDENCY_TO_FALL_ICD10,
            )
        )
    )
)
EMERGENCY_SPECIALTIES: tuple[str, ...] = ("300", "300", "300", "430", "320", "340", "710")
ELECTIVE_SPECIALTIES: tuple[str, ...] = ("100", "101", "110", "130", "301", "502")
FALL_SPECIALTIES: tuple[str, ...] = ("110", "430", "300")
SPECIALTY = Vocab(tuple(dict.fromkeys((*EMERGENCY_SPECIALTIES, *ELECTIVE_SPECIALTIES, "110"))))
