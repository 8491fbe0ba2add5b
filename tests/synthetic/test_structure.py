"""The county's two structures, the records reference and the records of fall-proneness."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from carerisk.cli import app
from features.codes import packaged_codes
from synthetic import CountyConfig, GenerationSummary
from synthetic.baseline import prepare
from synthetic.people import build_geography, make_people, rng_for
from synthetic.process import (
    REALISTIC_FALLS,
    STRUCTURES,
    Baseline,
    Structure,
    month_rates,
    simulate,
)

INDEX = "2024-04-01"


def _simulated(structure: Structure, people: int = 3_000):
    config = CountyConfig(people=people, seed=4, structure=structure)
    start_abs = config.start.year * 12 + config.start.month - 1
    p = make_people(config, build_geography(config), 0, people, start_abs)
    setup = prepare(p, rng_for(4, 3), start_abs, structure)
    _, truth, reference = simulate(
        p, setup.base, start_abs, config.months, config.index_months, setup.resident0,
        rng_for(4, 4), structure,
    )  # fmt: skip
    return p, truth, reference


@pytest.mark.parametrize("structure", STRUCTURES)
def test_reference_moves_the_truth_only_by_the_unseen_latent(structure: Structure) -> None:
    """Same rows as the truth; a person's true falls risk is above their reference exactly when
    their never-recorded fall-proneness is above its mean (same event path, same records)."""
    p, truth, reference = _simulated(structure)
    for name in ("person", "month", "outcome"):
        for a, b in zip(getattr(truth, name), getattr(reference, name), strict=True):
            assert np.array_equal(a, b)
    for who, outcome, t, r in zip(
        truth.person, truth.outcome, truth.prob, reference.prob, strict=True
    ):
        if len(who) == 0 or outcome[0] != 0:  # falls rows
            continue
        z = p.z_unseen[who]
        clear = np.abs(z) > 1e-3
        assert np.array_equal(np.sign(t - r)[clear], np.sign(z)[clear])


def _log_hazard(structure: Structure, dementia: bool, frid: float) -> np.ndarray:
    """The falls log-hazard of the same people, with dementia and FRID classes set."""
    config = CountyConfig(people=500, seed=4)
    start_abs = config.start.year * 12 + config.start.month - 1
    p = make_people(config, build_geography(config), 0, 500, start_abs)
    p.conditions["dementia"] = np.full(p.n, dementia)
    p.conditions["parkinsons"] = np.zeros(p.n, dtype=bool)
    base = prepare(p, rng_for(4, 3), start_abs, structure).base
    base = Baseline(base.d0, base.n_meds, np.full(p.n, frid))
    pf = month_rates(p, base, start_abs, 0, structure).pf[0]
    return np.log(-np.log1p(-pf))


@pytest.mark.parametrize("structure", STRUCTURES)
def test_drugs_weigh_more_with_dementia_only_in_the_realistic_county(structure: Structure) -> None:
    """The interaction of falls-risk-increasing drugs and dementia on the log-hazard: the
    realistic county's stated size, none in the additive control."""
    effect = {
        dementia: _log_hazard(structure, dementia, 2.0) - _log_hazard(structure, dementia, 0.0)
        for dementia in (False, True)
    }
    extra = effect[True] - effect[False]
    expected = 2.0 * REALISTIC_FALLS["frid_neuro"] if structure == "realistic" else 0.0
    assert np.allclose(extra, expected, atol=1e-9)


@pytest.fixture(scope="module")
def additive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("additive")
    result = CliRunner().invoke(
        app,
        ["synth", "--people", "3000", "--seed", "2", "--structure", "additive", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out, GenerationSummary(str(out), {}, 0, 0, 0.0)


def test_synth_writes_the_structure_and_the_reference(
    additive: tuple[Path, GenerationSummary], county: tuple[Path, GenerationSummary]
) -> None:
    for (out, _), structure in ((additive, "additive"), (county, "realistic")):
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["structure"] == structure
        assert manifest["truth"]["records_reference"] == "truth/records_reference.parquet"
        con = duckdb.connect()
        keys = "person_id, index_date, outcome"
        unmatched = con.execute(
            f"""SELECT count(*) FROM '{out}/truth/true_risk.parquet' t
            FULL JOIN '{out}/truth/records_reference.parquet' r USING ({keys})
            WHERE t.true_probability IS NULL OR r.reference_probability IS NULL"""
        ).fetchone()
        assert unmatched == (0,)


def test_an_unknown_structure_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["synth", "--people", "200", "--structure", "curvy", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "structure" in result.output


def _share_with(out: Path, condition: str, day: str = INDEX) -> tuple[float, float]:
    """Share of people aged 65+ with a record matching `condition`, by z_gait above 0 or not,
    is not observable; instead: the true falls risk of those with and without such a record."""
    return duckdb.connect().execute(
        f"""WITH flag AS (SELECT DISTINCT person_id FROM ({condition}) WHERE d < DATE '{day}')
        SELECT avg(true_probability) FILTER (WHERE f.person_id IS NOT NULL),
               avg(true_probability) FILTER (WHERE f.person_id IS NULL)
        FROM '{out}/truth/true_risk.parquet' t LEFT JOIN flag f USING (person_id)
        WHERE t.outcome = 'falls' AND t.index_date = DATE '{day}'"""
    ).fetchone() or (0.0, 0.0)


def _gp(out: Path, snomed: frozenset[str]) -> str:
    listed = ", ".join(f"'{c}'" for c in sorted(snomed))
    return f"SELECT person_id, event_date AS d FROM '{out}/gp_event.parquet' "\
        f"WHERE snomed_code IN ({listed})"  # fmt: skip


@pytest.mark.parametrize("record", ["gait", "assessment", "equipment"])
def test_records_of_fall_proneness_point_to_higher_risk(
    county: tuple[Path, GenerationSummary], record: str
) -> None:
    out = county[0]
    condition = {
        "gait": _gp(out, packaged_codes().gait_balance),
        "assessment": _gp(out, packaged_codes().falls_assessment),
        "equipment": f"SELECT person_id, start_date AS d FROM '{out}/social_care.parquet' "
        "WHERE service_type = 'equipment'",
    }[record]
    with_, without = _share_with(out, condition)
    assert with_ > 1.5 * without, (record, with_, without)


def test_records_of_fall_proneness_are_partial(county: tuple[Path, GenerationSummary]) -> None:
    """Not fully observable: most people aged 65+ have no gait or balance code."""
    out = county[0]
    share = (
        duckdb.connect()
        .execute(
            f"""WITH old AS (SELECT person_id FROM '{out}/person.parquet'
                         WHERE date_diff('year', birth_month, DATE '{INDEX}') >= 70)
        SELECT avg((g.person_id IS NOT NULL)::INT) FROM old
        LEFT JOIN (SELECT DISTINCT person_id FROM ({_gp(out, packaged_codes().gait_balance)})) g
        USING (person_id)"""
        )
        .fetchone()
    )
    assert share is not None and 0.03 < share[0] < 0.3
