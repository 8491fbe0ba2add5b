"""The data contract: every table a linked extract must contain, column by column.

This is the single description of the source tables. The pandera schemas used by
`carerisk load` are built from it, the synthetic county writes exactly these columns,
and the README documents it for partners preparing real extracts.

Conventions: one file per table named `<table>.parquet` or `<table>.csv`; dates are ISO
`YYYY-MM-DD`; booleans are true/false; every table carries the pseudonymised `person_id`
(never an NHS number); ICD-10 codes are written without the dot, as in HES (`S720`, `W19X`).
How a value is read (`READING_RULES`, with the patterns below) and why a row is quarantined
(`REASONS`) are part of the contract: both checkers, SQL and pandera, follow them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["str", "int", "float", "bool", "date"]

PERSON_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{5,63}$"
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9X]?$"
SNOMED_PATTERN = r"^[1-9][0-9]{5,17}$"  # plus a Verhoeff check digit, see codes.snomed_valid
BNF_PATTERN = r"^[0-9]{6}[0-9A-Z]*$"  # BNF chapter, section, paragraph, then optional detail
LSOA_PATTERN = r"^[EW]01[0-9]{6}$"
PRACTICE_PATTERN = r"^[A-Z][0-9]{5}$"


# --- how a value is read: one policy for the SQL checks and the pandera schemas -------------

WHITESPACE = " \t\n\r\v\f"  # removed around every value before it is checked and stored
INT_TEXT = r"^[+-]?[0-9]+(\.0*)?$"
FLOAT_TEXT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
BOOL_TEXT: dict[str, bool] = {"true": True, "false": False, "1": True, "0": False}
NHS_NUMBER_TEXT = r"^[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}$"  # plus the modulus 11 check digit
NHS_NUMBER_STOP_SHARE = 0.5  # a load stops when more of its person ids than this are NHS numbers
NHS_NUMBER_WITHHELD = "(NHS number withheld)"  # written in the quarantine instead

READING_RULES: tuple[str, ...] = (
    "A CSV file is UTF-8 text (a byte-order mark at its start is allowed), comma-separated, "
    'with `"` quotes and a header row. A line with more or fewer fields than the header, a '
    "stray quote or bytes that are not UTF-8 is quarantined as `malformed_row` and the rest "
    "loads; a quote left open to the end of the file stops the load, naming the line.",
    "Spaces, tabs and line breaks around a value are removed before it is checked and stored, "
    "in every column and both formats; a value that is then empty is missing.",
    "`int`: an optional sign and digits, optionally followed by `.0` (`7`, `-3`, `5.0`); in "
    "Parquet, an integer or a whole float.",
    "`float`: an optional sign, digits with an optional decimal point, an optional exponent "
    "(`27.5`, `.5`, `1e3`); `1_000`, `1,000`, `nan` and `inf` are not numbers.",
    "`bool`: `true`, `false`, `1` or `0`, in any case.",
    "`date`: `YYYY-MM-DD`, a real calendar date; in Parquet, a date or a timestamp (the time "
    "is dropped).",
    "`person_id` is a pseudonym. An NHS number (10 digits, optionally spaced 3-3-4, with a "
    "valid modulus 11 check digit) is quarantined as `nhs_number` in every table, and the "
    "quarantine keeps the row with the number withheld; a load where more than half of the "
    "person ids (in the person table, or in all tables) are NHS numbers stops.",
    "A row is judged on its own first; keys are then judged among the valid rows only, so a "
    "valid row is never lost to an invalid earlier row with its key.",
)

# Quarantine reasons, in the order they are reported, with what each means.
REASONS: tuple[tuple[str, str], ...] = (
    ("malformed_row", "a CSV line that cannot be split into the header's fields; the detail "
     "gives its line"),
    ("missing_value", "a required value is empty"),
    ("wrong_type", "the value is not of the column's type"),
    ("invalid_code", "the value fails the column's pattern, allowed values or check digit"),
    ("nhs_number", "the person id is an NHS number"),
    ("out_of_range", "the number is outside the column's range"),
    ("not_first_of_month", "a date that must be the first day of a month is not"),
    ("duplicate_row", "the row repeats an earlier valid row exactly"),
    ("duplicate_key", "the row repeats the key of an earlier valid row, with other content"),
    ("unknown_person", "the person is in neither this extract's person table nor the store's"),
    ("before_birth", "an event or death dated before the person's month of birth"),
    ("after_death", "an event dated after the person's death"),
    ("future_date", "a required date after the extract date"),
    ("date_order", "an end date before its start date"),
)  # fmt: skip


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False
    allowed: frozenset[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    snomed: bool = False  # check the SNOMED CT Verhoeff digit
    month_start: bool = False  # a date that must be the first day of a month
    pseudonym: bool = False  # a person id: never an NHS number
    description: str = ""
    # a source may not supply it: the extract's manifest then lists it in its coverage block
    # (features.coverage) and every value is empty
    may_be_unsupplied: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    event_date: str | None = None  # the date checked against death and the extract date
    description: str = ""
    # (earlier, later) column pairs where later must not precede earlier
    ordered_dates: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name} has no column {name}")


def _id(name: str, what: str) -> Column:
    return Column(name, "str", pattern=r"^[A-Za-z0-9_-]{1,64}$", description=f"unique id of {what}")


PERSON_ID = Column(
    "person_id", "str", pattern=PERSON_ID_PATTERN, pseudonym=True, description="pseudonymised id"
)
ETHNIC_GROUPS = frozenset({"white", "mixed", "asian", "black", "other"})
GP_SYSTEMS = frozenset({"EMIS", "SystmOne", "Vision", "Other"})
ADMISSION_METHODS = frozenset({"emergency", "elective"})
AE_DISPOSALS = frozenset({"admitted", "discharged", "referred", "left", "died"})
AMBULANCE_CATEGORIES = frozenset(
    {"fall", "long_lie", "breathing", "chest_pain", "stroke", "collapse", "other"}
)
CARE_SERVICES = frozenset(
    {
        "assessment",
        "home_care",
        "reablement",
        "telecare",
        "day_care",
        "residential",
        "nursing",
        "equipment",
    }
)


def _diag(n: int) -> Column:
    return Column(
        f"diag_{n:02d}",
        "str",
        nullable=n > 1,
        pattern=ICD10_PATTERN,
        description=f"ICD-10 diagnosis in position {n}",
    )


PERSON = Table(
    name="person",
    key=("person_id",),
    description="One row per person registered with a county GP practice during the extract.",
    columns=(
        PERSON_ID,
        Column("birth_month", "date", month_start=True, description="month of birth"),
        Column("sex", "str", allowed=frozenset({"F", "M"})),
        Column(
            "ethnicity",
            "str",
            nullable=True,
            allowed=ETHNIC_GROUPS,
            description="ONS 2021 high-level group; empty when not recorded",
        ),
        Column(
            "lsoa_code",
            "str",
            pattern=LSOA_PATTERN,
            description="small area (LSOA 2021)",
            may_be_unsupplied=True,
        ),
        Column(
            "imd_decile",
            "int",
            minimum=1,
            maximum=10,
            description="Index of Multiple Deprivation decile of the small area, 1 = most deprived",
            may_be_unsupplied=True,
        ),
        Column("district", "str", description="local authority district", may_be_unsupplied=True),
        Column(
            "practice_code",
            "str",
            pattern=PRACTICE_PATTERN,
            description="GP practice (ODS)",
            may_be_unsupplied=True,
        ),
        Column(
            "gp_system",
            "str",
            allowed=GP_SYSTEMS,
            description="practice clinical system",
            may_be_unsupplied=True,
        ),
        Column("lives_alone", "bool", nullable=True),
        Column("informal_carer", "bool", nullable=True, description="has an informal carer"),
    ),
)

GP_EVENT = Table(
    name="gp_event",
    key=("event_id",),
    event_date="event_date",
    description="Coded GP record entries: diagnoses, findings and observations.",
    columns=(
        _id("event_id", "the record entry"),
        PERSON_ID,
        Column("event_date", "date"),
        Column("snomed_code", "str", pattern=SNOMED_PATTERN, snomed=True),
        Column(
            "value",
            "float",
            nullable=True,
            minimum=0,
            maximum=1000,
            description="numeric result where the code is an observation (BMI, units a week)",
        ),
    ),
)

PRESCRIPTION = Table(
    name="prescription",
    key=("prescription_id",),
    event_date="issue_date",
    description="Issued medicines.",
    columns=(
        _id("prescription_id", "the issue"),
        PERSON_ID,
        Column("issue_date", "date"),
        Column(
            "bnf_code",
            "str",
            pattern=BNF_PATTERN,
            description="BNF code, at least chapter, section and paragraph (6 digits)",
        ),
        Column("medicine", "str", description="generic medicine name"),
    ),
)

HOSPITAL_EPISODE = Table(
    name="hospital_episode",
    key=("episode_id",),
    event_date="admission_date",
    ordered_dates=(("admission_date", "discharge_date"),),
    description="Hospital admissions (one row per spell).",
    columns=(
        _id("episode_id", "the spell"),
        PERSON_ID,
        Column("admission_date", "date"),
        Column(
            "discharge_date", "date", nullable=True, description="empty while still in hospital"
        ),
        Column("admission_method", "str", allowed=ADMISSION_METHODS),
        Column(
            "main_specialty",
            "str",
            pattern=r"^[0-9]{3}$",
            description="main specialty code (710-715 mental health)",
            may_be_unsupplied=True,
        ),
        *(_diag(n) for n in range(1, 7)),
    ),
)

AE_ATTENDANCE = Table(
    name="ae_attendance",
    key=("attendance_id",),
    event_date="arrival_date",
    description="Accident and emergency attendances.",
    columns=(
        _id("attendance_id", "the attendance"),
        PERSON_ID,
        Column("arrival_date", "date"),
        Column("diagnosis_code", "str", nullable=True, pattern=ICD10_PATTERN),
        Column(
            "injury_cause",
            "str",
            nullable=True,
            pattern=ICD10_PATTERN,
            description="ICD-10 external cause (V01-Y98), e.g. W19X for a fall",
        ),
        Column("disposal", "str", allowed=AE_DISPOSALS, may_be_unsupplied=True),
    ),
)

AMBULANCE_INCIDENT = Table(
    name="ambulance_incident",
    key=("incident_id",),
    event_date="incident_date",
    description="Ambulance call-outs.",
    columns=(
        _id("incident_id", "the incident"),
        PERSON_ID,
        Column("incident_date", "date"),
        Column("category", "str", allowed=AMBULANCE_CATEGORIES),
        Column("conveyed", "bool", description="taken to hospital"),
    ),
)

SOCIAL_CARE = Table(
    name="social_care",
    key=("service_id",),
    event_date="start_date",
    ordered_dates=(("start_date", "end_date"),),
    description="Adult social care assessments and services.",
    columns=(
        _id("service_id", "the service"),
        PERSON_ID,
        Column("service_type", "str", allowed=CARE_SERVICES),
        Column("start_date", "date"),
        Column("end_date", "date", nullable=True, description="empty while ongoing"),
        Column(
            "hours_per_week",
            "float",
            nullable=True,
            minimum=0,
            maximum=168,
            description="planned home care hours a week",
        ),
    ),
)

FIRE_HOME_VISIT = Table(
    name="fire_home_visit",
    key=("visit_id",),
    event_date="visit_date",
    description="Fire and rescue service safe and well visits.",
    columns=(
        _id("visit_id", "the visit"),
        PERSON_ID,
        Column("visit_date", "date"),
        Column("trip_hazards", "bool"),
        Column("smoke_alarm_working", "bool"),
        Column("smoker", "bool"),
        Column("mobility_concern", "bool"),
        Column("referral_made", "bool"),
    ),
)

DEATH = Table(
    name="death",
    key=("person_id",),
    event_date="date_of_death",
    description="Registered deaths.",
    columns=(PERSON_ID, Column("date_of_death", "date")),
)

TABLES: tuple[Table, ...] = (
    PERSON,
    GP_EVENT,
    PRESCRIPTION,
    HOSPITAL_EPISODE,
    AE_ATTENDANCE,
    AMBULANCE_INCIDENT,
    SOCIAL_CARE,
    FIRE_HOME_VISIT,
    DEATH,
)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)


def table(name: str) -> Table:
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(f"no table named {name} in the data contract")


# How each column kind is stored in the DuckDB store (and in Parquet extracts).
DUCKDB_TYPES: dict[str, str] = {
    "str": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
}


def create_table_sql(spec: Table, name: str | None = None) -> str:
    """`CREATE TABLE IF NOT EXISTS` for a contract table: its columns, no key constraint.

    DuckDB keeps a declared key's index in memory whole (it cannot spill), which a national
    store does not fit; the loader keeps each key unique itself (features.store), and
    `carerisk store check` proves it on any store (features.store_check).
    """
    cols = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.kind]}' for c in spec.columns)
    return f'CREATE TABLE IF NOT EXISTS "{name or spec.name}" ({cols})'


def contract_markdown() -> str:
    """The contract as Markdown: the README's data contract section is this text."""
    lines = ["How values are read:", ""]
    lines += [f"- {rule}" for rule in READING_RULES]
    lines += ["", "Quarantine reasons:", "", "| reason | the row |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in REASONS]
    lines.append("")
    for spec in TABLES:
        lines += [
            f"**`{spec.name}`** — {spec.description} Key: `{', '.join(spec.key)}`.",
            "",
            "| column | type | required | rule |",
            "| --- | --- | --- | --- |",
        ]
        lines += [_column_row(col) for col in spec.columns]
        lines.append("")
    return "\n".join(lines)


def _column_row(col: Column) -> str:
    rule = []
    if col.allowed:
        rule.append("one of " + ", ".join(sorted(col.allowed)))
    if col.minimum is not None and col.maximum is not None:
        rule.append(f"{col.minimum:g} to {col.maximum:g}")
    if col.pattern:
        rule.append(f"`{col.pattern}`")
    if col.snomed:
        rule.append("valid SNOMED CT check digit")
    if col.month_start:
        rule.append("the first day of a month")
    if col.pseudonym:
        rule.append("not an NHS number")
    if col.description:
        rule.append(col.description)
    required = "no" if col.nullable else "yes"
    return f"| `{col.name}` | {col.kind} | {required} | {'; '.join(rule)} |"
