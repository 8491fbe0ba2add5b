"""What the synthetic records draw from: the code vocabularies, built from the code lists,
and the medicines started for conditions and deficits.

Every code the county writes comes from a list in codelists/lists: a condition's or a
deficit's codes are drawn from its whole list, weighted towards the common concepts
(weights.csv; 1 for a code not named there), so that the full lists are exercised. A concept's
draw leaves out codes that another concept's list also holds, so that one record never speaks
for two concepts the county keeps apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from codelists import CodeListError, CodeLists, snomed_valid
from features.codes import EFI_DEFICITS, FRACTURE_SITES, FRID_CLASSES, Codes

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
    name for name in EFI_DEFICITS if name not in CONDITION_DEFICITS
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


# the deficit a diagnosed condition also counts for, where the eFI has one
CONDITION_DEFICIT_OF = {
    "dementia": "memory_and_cognitive_problems",
    "parkinsons": "parkinsonism_and_tremor",
    "stroke": "cerebrovascular_disease",
    "urinary_incontinence": "urinary_incontinence",
    "visual_impairment": "visual_impairment",
    "heart_failure": "heart_failure",
    "copd": "respiratory_disease",
    "ckd": "chronic_kidney_disease",
    "diabetes": "diabetes",
    "complicated_diabetes": "diabetes",
    "osteoporosis": "osteoporosis",
}
OTHER_SNOMED_COUNT = 40  # plausible codes no list names, for routine entries
OTHER_SNOMED_SEED = 20240401


@dataclass(frozen=True)
class Vocab:
    """A list of strings and the position of each (records store positions)."""

    values: tuple[str, ...]

    def index(self, value: str) -> int:
        return self._positions()[value]

    def indices(self, values: Iterable[str]) -> np.ndarray:
        where = self._positions()
        return np.array([where[v] for v in values], dtype=np.int32)

    def _positions(self) -> dict[str, int]:
        cached = self.__dict__.get("_where")
        if cached is None:
            cached = {v: i for i, v in enumerate(self.values)}
            object.__setattr__(self, "_where", cached)
        return cached


@dataclass(frozen=True)
class Draw:
    """Codes (positions in a vocabulary) and the chance of drawing each."""

    positions: np.ndarray
    chances: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if len(self.positions) == 1:
            return np.full(n, self.positions[0], dtype=np.int64)
        return self.positions[rng.choice(len(self.positions), size=n, p=self.chances)]


@dataclass(frozen=True)
class Catalogue:
    """The county's vocabularies and draws, from one set of code lists."""

    lists: CodeLists
    codes: Codes
    snomed: Vocab
    icd: Vocab
    specialty: Vocab
    medicines: tuple[tuple[str, str, bool], ...]  # (BNF code, generic name, FRID?)
    condition_snomed: dict[str, Draw]
    condition_icd: dict[str, Draw]
    deficit_snomed: dict[str, Draw]
    fall_snomed: Draw
    proneness: tuple[Draw, Draw, Draw]  # gait or balance, dizziness, falls assessment
    other_snomed: tuple[str, ...]
    fall_causes: Draw
    hip_fractures: tuple[str, ...]
    other_fractures: tuple[str, ...]
    fall_injuries: tuple[str, ...]
    other_causes: tuple[str, ...]
    acute_diagnoses: tuple[str, ...]
    elective_diagnoses: tuple[str, ...]
    # treatment functions of the spells, each repeated as often as its weight: drawn evenly
    emergency_specialties: tuple[str, ...]
    elective_specialties: tuple[str, ...]
    fall_specialties: tuple[str, ...]

    def snomed_draw(self, name: str) -> Draw:
        """Draws from SNOMED CT list `name`, weighted (its codes must be in the vocabulary)."""
        return _draw(self.snomed, _weighted(self.lists, name))

    @property
    def med_index(self) -> dict[str, int]:
        return {name: i for i, (_, name, _) in enumerate(self.medicines)}

    @property
    def frid_mask(self) -> np.ndarray:
        return np.array([frid for _, _, frid in self.medicines])


def build_catalogue(lists: CodeLists) -> Catalogue:
    """The vocabularies and draws the county uses, from `lists`."""
    codes = Codes.from_lists(lists)
    own = _owners(lists)
    condition_codes = {
        name: _exclusive(lists, f"condition_{name}", own, _partner(name))
        for name in codes.conditions
    }
    deficit_codes = {
        name: _exclusive(lists, f"efi_{name}", own, ())
        for name in GENERIC_DEFICITS
        if codes.efi_deficits[name]
    }
    proneness = ("gait_balance", "efi_dizziness", "falls_assessment")
    other = _other_snomed(set(codes.all_snomed()), OTHER_SNOMED_COUNT)
    snomed = Vocab(
        tuple(
            dict.fromkeys(
                [
                    *(c for cs in condition_codes.values() for c, _ in cs),
                    *(c for cs in deficit_codes.values() for c, _ in cs),
                    *lists.codes("fall_snomed"),
                    *(c for name in proneness for c in lists.codes(name)),
                    *lists.codes("bmi")[:1],
                    *lists.codes("alcohol_units")[:1],
                    *lists.codes("heavy_drinker"),
                    *(
                        c
                        for level in ("current", "ex", "never")
                        for c in lists.codes(f"smoking_{level}")
                    ),
                    *(
                        c
                        for level in ("moderate", "severe")
                        for c in lists.codes(f"frailty_{level}")
                    ),
                    *other,
                ]
            )
        )
    )
    fractures = {site: lists.icd10_prefixes(f"fracture_{site}_icd10") for site in FRACTURE_SITES}
    other_fractures = tuple(c for site in FRACTURE_SITES[1:] for c in fractures[site])
    icd_lists = {name: _weighted(lists, f"condition_{name}_icd10") for name in codes.conditions}
    generated = {
        key: lists.icd10_prefixes(f"synthetic_{key}_icd10")
        for key in ("fall_causes", "fall_injuries", "other_causes", "acute_diagnoses",
                    "elective_diagnoses")
    }  # fmt: skip
    icd = Vocab(
        tuple(
            dict.fromkeys(
                (
                    *generated["fall_causes"],
                    *fractures["hip"],
                    *other_fractures,
                    *generated["fall_injuries"],
                    *generated["other_causes"],
                    *generated["acute_diagnoses"],
                    *generated["elective_diagnoses"],
                    *(c for cs in icd_lists.values() for c, _ in cs),
                    *codes.tendency_to_fall_icd10,
                )
            )
        )
    )
    frid = [p for name in FRID_CLASSES for p in codes.frid_bnf_prefixes[name]]
    meds = lists.info("synthetic_medicines")
    specialties = {
        kind: _repeated(lists, f"synthetic_{kind}_specialties")
        for kind in ("emergency", "elective", "fall")
    }
    return Catalogue(
        lists=lists,
        codes=codes,
        snomed=snomed,
        icd=icd,
        specialty=Vocab(
            tuple(dict.fromkeys((*specialties["emergency"], *specialties["elective"])))
        ),
        medicines=tuple(
            (code, term, any(code.startswith(p) for p in frid))
            for code, term in zip(meds.codes, meds.terms, strict=True)
        ),
        condition_snomed={n: _draw(snomed, cs) for n, cs in condition_codes.items()},
        condition_icd={n: _draw(icd, cs) for n, cs in icd_lists.items()},
        deficit_snomed={n: _draw(snomed, cs) for n, cs in deficit_codes.items()},
        fall_snomed=_draw(snomed, _weighted(lists, "fall_snomed")),
        proneness=(
            _draw(snomed, _weighted(lists, proneness[0])),
            _draw(snomed, _weighted(lists, proneness[1])),
            _draw(snomed, _weighted(lists, proneness[2])),
        ),
        other_snomed=other,
        fall_causes=_draw(icd, _weighted(lists, "synthetic_fall_causes_icd10")),
        hip_fractures=fractures["hip"],
        other_fractures=other_fractures,
        fall_injuries=generated["fall_injuries"],
        other_causes=generated["other_causes"],
        acute_diagnoses=generated["acute_diagnoses"],
        elective_diagnoses=generated["elective_diagnoses"],
        emergency_specialties=specialties["emergency"],
        elective_specialties=specialties["elective"],
        fall_specialties=specialties["fall"],
    )


@cache
def catalogue() -> Catalogue:
    """The catalogue of the packaged code lists (built on first use, never on import)."""
    return build_catalogue(CodeLists.load())


def _repeated(lists: CodeLists, name: str) -> tuple[str, ...]:
    """A list's codes in file order, each repeated as many times as its (whole) weight."""
    out: list[str] = []
    for code in lists.codes(name):
        weight = lists.weight(name, code)
        if weight != int(weight):
            raise CodeListError(
                f"{lists.folder / 'weights.csv'}: {name} {code!r} has weight {weight}; "
                "the lists drawn evenly take whole weights (repeats)"
            )
        out += [code] * int(weight)
    return tuple(out)


def _partner(condition: str) -> tuple[str, ...]:
    """The lists a condition's record may also belong to: its own deficit's."""
    deficit = CONDITION_DEFICIT_OF.get(condition)
    return (f"efi_{deficit}",) if deficit else ()


def _owners(lists: CodeLists) -> dict[str, set[str]]:
    """For each SNOMED CT code, the condition and deficit lists holding it."""
    out: dict[str, set[str]] = {}
    for name in lists.names("snomed"):
        if name.startswith(("condition_", "efi_")) or name in (
            "fall_snomed",
            "gait_balance",
            "falls_assessment",
        ):
            for code in lists.codes(name):
                out.setdefault(code, set()).add(name)
    return out


def _exclusive(
    lists: CodeLists, name: str, owners: dict[str, set[str]], partners: Sequence[str]
) -> list[tuple[str, float]]:
    """The list's codes no other concept's list holds (its partners' aside), weighted; a
    condition with a partner deficit draws only codes that list holds too, where it has any."""
    allowed = {name, *partners}
    weighted = _weighted(lists, name)
    alone = [(c, w) for c, w in weighted if owners.get(c, {name}) <= allowed]
    shared = [(c, w) for c, w in alone if all(c in lists.codes(p) for p in partners)]
    return shared or alone or weighted


def _weighted(lists: CodeLists, name: str) -> list[tuple[str, float]]:
    return [(code, lists.weight(name, code)) for code in lists.codes(name)]


def _draw(vocab: Vocab, weighted: Sequence[tuple[str, float]]) -> Draw:
    w = np.array([weight for _, weight in weighted], dtype=float)
    return Draw(vocab.indices(c for c, _ in weighted).astype(np.int64), w / w.sum())


def _other_snomed(known: set[str], count: int) -> tuple[str, ...]:
    """Plausible SNOMED CT identifiers (valid check digit) that no code list names."""
    rng = np.random.default_rng(OTHER_SNOMED_SEED)
    out: list[str] = []
    while len(out) < count:
        base = str(int(rng.integers(10_000_00, 99_999_999))) + "00"
        code = next(base + d for d in "0123456789" if snomed_valid(base + d))
        if code not in known and code not in out:
            out.append(code)
    return tuple(out)
