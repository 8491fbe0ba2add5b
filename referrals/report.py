"""Referrals counted: made, visited and what the visits found, and capacity against risk.

`referral_report` counts referrals made, visits done and their findings by band and district,
and sets the visits available in a month (the outcome's ``monthly_capacity``) against the
people at risk (the register's at-risk bands, `Outcome.at_risk`) in each district;
`write_report` writes it as JSON and as a self-contained HTML page in the evaluation report's
style.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined, select_autoescape

from referrals.store import FINDINGS, Referral


@dataclass(frozen=True)
class AtRisk:
    """People at risk by district (the register's at-risk bands), and the month's capacity."""

    bands: tuple[str, ...]  # the bands counted as at risk, highest first
    by_district: Mapping[str, int]
    monthly_capacity: int | None
    unit: str


def referral_report(
    referrals: Sequence[Referral],
    outcome: str,
    at_risk: AtRisk | None = None,
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Referrals made, visits done and findings, by band and district; capacity against risk."""
    now = now or dt.datetime.now(dt.UTC)
    chosen = [r for r in referrals if r.outcome == outcome]
    visited = [r for r in chosen if r.findings is not None]
    report: dict[str, Any] = {
        "generated_at": now.isoformat(timespec="seconds"),
        "outcome": outcome,
        "referrals": _counts(chosen),
        "by_status": dict(sorted(Counter(r.status for r in chosen).items())),
        "visits": _counts(visited),
        "findings": {
            name: _counts([r for r in visited if getattr(r.findings, name)]) for name in FINDINGS
        },
    }
    if at_risk is not None:
        report["capacity"] = _capacity(visited, at_risk, now)
    return report


def _counts(referrals: Sequence[Referral]) -> dict[str, Any]:
    cells = Counter((r.district, r.band) for r in referrals)
    return {
        "total": len(referrals),
        "by_band": dict(sorted(Counter(r.band for r in referrals).items())),
        "by_district": dict(sorted(Counter(r.district for r in referrals).items())),
        "by_district_and_band": [
            {"district": d, "band": b, "count": n} for (d, b), n in sorted(cells.items())
        ],
    }


def _capacity(visited: Sequence[Referral], at_risk: AtRisk, now: dt.datetime) -> dict[str, Any]:
    since = (now - dt.timedelta(days=30)).date()
    recent = Counter(r.district for r in visited if r.visit_date and r.visit_date >= since)
    ever = Counter(r.district for r in visited)
    rows = [
        {"district": d, "people_at_risk": n, "visited": ever.get(d, 0),
         "visits_last_30_days": recent.get(d, 0)}
        for d, n in sorted(at_risk.by_district.items())
    ]  # fmt: skip
    total = sum(at_risk.by_district.values())
    capacity = at_risk.monthly_capacity
    return {
        "at_risk_bands": list(at_risk.bands),
        "people_at_risk": total,
        "visits_available_a_month": capacity,
        "unit": at_risk.unit,
        "months_to_visit_everyone_at_risk": round(total / capacity, 1) if capacity else None,
        "visits_last_30_days": sum(recent.values()),
        "by_district": rows,
    }


def write_report(report: dict[str, Any], out_dir: Path, css: str) -> tuple[Path, Path]:
    """referrals-<outcome>.json and .html in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"referrals-{report['outcome']}"
    json_path, html_path = stem.with_suffix(".json"), stem.with_suffix(".html")
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    env = Environment(loader=BaseLoader(), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined)  # fmt: skip
    html = env.from_string(TEMPLATE).render(r=report, css=css, findings=FINDINGS)
    html_path.write_text(html, encoding="utf-8")
    return json_path, html_path


TEMPLATE = """<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Referrals to the fire service: {{ r.outcome|replace('_', ' ') }}</title>
<style>
{{ css|safe }}
</style>
</head>
{% macro table(counts, caption) %}
<table>
<caption>{{ caption }} ({{ counts.total }} in all)</caption>
<thead><tr><th scope="col" class="text">District</th><th scope="col" class="text">Band</th>
<th scope="col">Count</th></tr></thead>
<tbody>
{% for row in counts.by_district_and_band %}
<tr><th scope="row">{{ row.district }}</th><td class="text">{{ row.band }}</td>
<td>{{ row.count }}</td></tr>
{% else %}
<tr><td class="text" colspan="3">none</td></tr>
{% endfor %}
</tbody>
</table>
{% endmacro %}
<body>
<header>
<p class="note">carerisk referral report, {{ r.generated_at }}</p>
<h1>Referrals to the fire service: {{ r.outcome|replace('_', ' ') }}</h1>
</header>
<main>
<section id="summary" aria-labelledby="summary-h">
<h2 id="summary-h">1. Summary</h2>
<p>{{ r.referrals.total }} referrals made; {{ r.visits.total }} visits done.</p>
<table>
<caption>Referrals by status</caption>
<thead><tr><th scope="col" class="text">Status</th><th scope="col">Referrals</th></tr></thead>
<tbody>
{% for status, n in r.by_status.items() %}
<tr><th scope="row">{{ status|replace('_', ' ') }}</th><td>{{ n }}</td></tr>
{% endfor %}
</tbody>
</table>
</section>
<section id="made" aria-labelledby="made-h">
<h2 id="made-h">2. Referrals made</h2>
{{ table(r.referrals, "Referrals by district and band") }}
</section>
<section id="visits" aria-labelledby="visits-h">
<h2 id="visits-h">3. Visits and their findings</h2>
{{ table(r.visits, "Visits by district and band") }}
{% for name in findings %}
{{ table(r.findings[name], "Visits finding " ~ name|replace('_', ' ')) }}
{% endfor %}
</section>
{% if r.capacity is defined %}
<section id="capacity" aria-labelledby="capacity-h">
<h2 id="capacity-h">4. Visits available against people at risk</h2>
<p class="callout">{{ r.capacity.people_at_risk }} people at risk (bands
{{ r.capacity.at_risk_bands|join(' and ') }});
{% if r.capacity.visits_available_a_month %}{{ r.capacity.visits_available_a_month }}
{{ r.capacity.unit }} can be visited a month, so visiting everyone at risk takes about
{{ r.capacity.months_to_visit_everyone_at_risk }} months.{% else %}no monthly capacity is set
for this outcome.{% endif %} {{ r.capacity.visits_last_30_days }} visits in the last 30 days.</p>
<table>
<caption>By district</caption>
<thead><tr><th scope="col" class="text">District</th><th scope="col">People at risk</th>
<th scope="col">Visited</th><th scope="col">Visits in the last 30 days</th></tr></thead>
<tbody>
{% for row in r.capacity.by_district %}
<tr><th scope="row">{{ row.district }}</th><td>{{ row.people_at_risk }}</td>
<td>{{ row.visited }}</td><td>{{ row.visits_last_30_days }}</td></tr>
{% endfor %}
</tbody>
</table>
</section>
{% endif %}
</main>
</body>
</html>
"""
