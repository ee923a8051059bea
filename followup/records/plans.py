"""Follow-up protocols by diagnosis and stage, and the plan (visits + photo requests) they produce.

Sources
- Melanoma: NICE guideline NG14 "Melanoma: assessment and management" (2015, updated 2022), section 1.8
  "Follow-up after treatment": stage IA — 2 to 4 times in the first year, then discharge; stages IB–IIC and
  IIIA–IV (resected) — every 3 months for 3 years, then every 6 months to year 5, then discharge; stage 0
  (in situ) — no routine follow-up after excision.
- Basal-cell carcinoma: NCCN Clinical Practice Guidelines in Oncology, Basal Cell Skin Cancer (v1.2024),
  follow-up: history and skin examination every 6–12 months for 5 years, then at least annually.
- Squamous-cell carcinoma: NCCN Guidelines, Squamous Cell Skin Cancer (v1.2024), local disease: every 3–12
  months for 2 years, every 6–12 months to year 5, then annually.
Where a range is given, the intensive end is the default (a missed recurrence is the worst outcome); a
"low" risk stage takes the other end. A clinic can override any protocol (``Clinic.protocol_overrides``).

Between visits the patient sends photos: monthly in year 1, every 2 months in years 2–3, every 3 months
after, never within two weeks of a clinic visit, and only while the protocol's follow-up lasts.

Each protocol also says how far around the outlined scar the photos are watched (``site_margin_mm``): 20 mm
after a melanoma (a recurrence within 2 cm of the scar is the conventional meaning of a local recurrence or a
satellite), 10 mm after a BCC, SCC or other excision (their recurrences arise in or right beside the scar).
A change outside that site is still reported, but on its own it never makes a priority-1 alert.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping, Optional

from dateutil.relativedelta import relativedelta

from followup.models.plans import PlanItemKind

NICE_NG14 = "NICE NG14 Melanoma (2015, updated 2022), 1.8 Follow-up after treatment"
NCCN_BCC = "NCCN Guidelines Basal Cell Skin Cancer v1.2024, Follow-up"
NCCN_SCC = "NCCN Guidelines Squamous Cell Skin Cancer v1.2024, Follow-up"

# A schedule is a list of phases (until_month, every_months), counted from the excision date.
Schedule = list[tuple[int, int]]

DEFAULT_PHOTO_SCHEDULE: Schedule = [(12, 1), (36, 2), (60, 3)]
PHOTO_GAP_AROUND_VISIT_DAYS = 14
#: Furthest a plan item may be put ahead of today: every protocol ends within 5 years, so a date beyond
#: this is a typo (and 9999-12-31 overflowed the reminder times: a 500).
MAX_PLAN_YEARS_AHEAD = 10
# Watched margin (mm) around the outlined scar, by diagnosis; a protocol's ``site_margin_mm``.
SITE_MARGIN_MM = {"melanoma": 20.0, "scc": 10.0, "bcc": 10.0, "other": 10.0}


@dataclass(frozen=True)
class Protocol:
    name: str
    source: str
    visits: Schedule
    photo_until_month: int
    photos: Schedule = field(default_factory=lambda: list(DEFAULT_PHOTO_SCHEDULE))
    site_margin_mm: float = SITE_MARGIN_MM["other"]


_MELANOMA, _BCC, _SCC, _OTHER = (SITE_MARGIN_MM[d] for d in ("melanoma", "bcc", "scc", "other"))
PROTOCOLS: dict[str, Protocol] = {
    "melanoma-0": Protocol("melanoma-0", NICE_NG14, [], 12, site_margin_mm=_MELANOMA),
    "melanoma-IA": Protocol("melanoma-IA", NICE_NG14, [(12, 3)], 12, site_margin_mm=_MELANOMA),
    "melanoma-IB-IV": Protocol("melanoma-IB-IV", NICE_NG14, [(36, 3), (60, 6)], 60, site_margin_mm=_MELANOMA),
    "bcc": Protocol("bcc", NCCN_BCC, [(60, 6)], 60, site_margin_mm=_BCC),
    "bcc-low": Protocol("bcc-low", NCCN_BCC, [(60, 12)], 60, site_margin_mm=_BCC),
    "scc": Protocol("scc", NCCN_SCC, [(24, 3), (60, 6)], 60, site_margin_mm=_SCC),
    "scc-low": Protocol("scc-low", NCCN_SCC, [(24, 6), (60, 12)], 60, site_margin_mm=_SCC),
    "other": Protocol("other", "Clinic default for other excised skin cancers", [(24, 6), (60, 12)], 60,
                      site_margin_mm=_OTHER),
}


def protocol_name(diagnosis: str, stage: Optional[str]) -> str:
    """The protocol for a diagnosis and stage; an unknown stage gets the most intensive one."""
    s = (stage or "").strip().upper().replace("STAGE", "").strip()
    if diagnosis == "melanoma":
        if s in ("0", "IN SITU", "TIS"):
            return "melanoma-0"
        if s == "IA":
            return "melanoma-IA"
        return "melanoma-IB-IV"
    if diagnosis in ("bcc", "scc"):
        return f"{diagnosis}-low" if s in ("LOW", "LOW RISK", "LOW-RISK") else diagnosis
    return "other"


def resolve_protocol(name: str, overrides: Optional[Mapping[str, Any]] = None) -> Protocol:
    """The named protocol with a clinic's override (``{"visits": [[until, every], ...], "site_margin_mm": 15,
    ...}``) applied."""
    base = PROTOCOLS[name]
    override = (overrides or {}).get(name)
    if not override:
        return base
    return Protocol(
        name=base.name,
        source=f"Clinic override of: {base.source}",
        visits=[tuple(p) for p in override.get("visits", base.visits)],
        photo_until_month=int(override.get("photo_until_month", base.photo_until_month)),
        photos=[tuple(p) for p in override.get("photos", base.photos)],
        site_margin_mm=float(override.get("site_margin_mm", base.site_margin_mm)),
    )


def schedule_dates(start: date, schedule: Schedule) -> list[date]:
    """Dates every ``every`` months after ``start`` within each phase's ``until`` month."""
    dates, month = [], 0
    for until, every in schedule:
        if every <= 0:
            raise ValueError("a schedule's interval must be at least one month")
        while month + every <= until:
            month += every
            dates.append(start + relativedelta(months=month))
    return dates


def check_plan_date(value: date, *, excision_date: date, today: date) -> None:
    """Raise ValueError, in words for the form, unless ``value`` can be a plan item's due date: not before
    the excision (0001-01-01 underflowed the reminder times) and at most ``MAX_PLAN_YEARS_AHEAD`` years ahead."""
    if value < excision_date:
        raise ValueError(f"A plan date cannot be before the excision date ({excision_date.isoformat()}).")
    latest = today + relativedelta(years=MAX_PLAN_YEARS_AHEAD)
    if value > latest:
        raise ValueError(f"A plan date cannot be more than {MAX_PLAN_YEARS_AHEAD} years ahead "
                         f"(after {latest.isoformat()}).")


def plan_items(protocol: Protocol, excision_date: date, *, today: date) -> list[tuple[str, date]]:
    """``(kind, due_date)`` pairs from ``today`` on: clinic visits and the photo requests between them."""
    visits = [d for d in schedule_dates(excision_date, protocol.visits) if d >= today]
    photo_schedule = [(min(u, protocol.photo_until_month), e) for u, e in protocol.photos]
    photos = [
        d for d in schedule_dates(excision_date, photo_schedule)
        if d >= today and all(abs((d - v).days) > PHOTO_GAP_AROUND_VISIT_DAYS for v in visits)
    ]
    items = [(PlanItemKind.VISIT, d) for d in visits] + [(PlanItemKind.PHOTO, d) for d in photos]
    return sorted(items, key=lambda item: (item[1], item[0]))
