"""Follow-up protocols from the guidelines, and clinic overrides."""
from datetime import date

import pytest

from followup.records.plans import (
    PROTOCOLS,
    check_plan_date,
    plan_items,
    protocol_name,
    resolve_protocol,
    schedule_dates,
)

EXCISION = date(2026, 1, 15)


@pytest.mark.parametrize("diagnosis, stage, expected", [
    ("melanoma", "0", "melanoma-0"), ("melanoma", "IA", "melanoma-IA"), ("melanoma", "IIB", "melanoma-IB-IV"),
    ("melanoma", None, "melanoma-IB-IV"), ("melanoma", "stage IIIc", "melanoma-IB-IV"),
    ("bcc", None, "bcc"), ("bcc", "low", "bcc-low"), ("scc", "high", "scc"), ("scc", "Low risk", "scc-low"),
    ("other", None, "other"),
])
def test_protocol_by_diagnosis_and_stage(diagnosis, stage, expected):
    assert protocol_name(diagnosis, stage) == expected


def visits(name):
    return [d for kind, d in plan_items(PROTOCOLS[name], EXCISION, today=EXCISION) if kind == "visit"]


def test_melanoma_ib_to_iii_every_3_months_for_3_years_then_6_to_year_5():
    dates = visits("melanoma-IB-IV")
    assert len(dates) == 12 + 4
    assert dates[0] == date(2026, 4, 15) and dates[11] == date(2029, 1, 15)
    assert dates[12] == date(2029, 7, 15) and dates[-1] == date(2031, 1, 15)


def test_melanoma_ia_first_year_only_and_in_situ_none():
    assert visits("melanoma-IA") == [date(2026, 4, 15), date(2026, 7, 15), date(2026, 10, 15), date(2027, 1, 15)]
    assert visits("melanoma-0") == []


def test_bcc_every_6_months_for_5_years_and_scc_3_then_6():
    assert len(visits("bcc")) == 10
    scc = visits("scc")
    assert len(scc) == 8 + 6 and scc[7] == date(2028, 1, 15) and scc[8] == date(2028, 7, 15)


def test_photos_fall_between_visits_never_within_two_weeks():
    items = plan_items(PROTOCOLS["melanoma-IB-IV"], EXCISION, today=EXCISION)
    visit_dates = [d for k, d in items if k == "visit"]
    photos = [d for k, d in items if k == "photo"]
    assert photos and photos[0] == date(2026, 2, 15)
    assert all(abs((p - v).days) > 14 for p in photos for v in visit_dates)
    assert max(photos) <= date(2031, 1, 15)


def test_items_before_today_are_left_out():
    items = plan_items(PROTOCOLS["bcc"], EXCISION, today=date(2028, 1, 1))
    assert min(d for _, d in items) >= date(2028, 1, 1)


def test_clinic_override_replaces_the_schedule():
    protocol = resolve_protocol("bcc", {"bcc": {"visits": [[24, 12]]}})
    assert [d for k, d in plan_items(protocol, EXCISION, today=EXCISION) if k == "visit"] == [
        date(2027, 1, 15), date(2028, 1, 15)]
    assert protocol.source.startswith("Clinic override")


def test_bad_interval_is_refused():
    with pytest.raises(ValueError):
        schedule_dates(EXCISION, [(12, 0)])


def test_clinic_override_is_used_for_new_sites(client, world, patient_id):
    from followup.db import db

    world.clinic.protocol_overrides = {"melanoma-IB-IV": {"visits": [[12, 6]]}}
    db.session.commit()
    response = client.post(f"/api/v1/patients/{patient_id}/sites", headers=world.headers(client, "derm@north.test"),
                           json={"body_site": "back", "diagnosis": "melanoma", "stage": "IIA",
                                 "excision_date": date.today().isoformat()})
    assert response.status_code == 201
    assert len(response.get_json()["plan"]["visits"]) == 2


@pytest.mark.parametrize("due, words", [(date(9999, 12, 31), "more than 10 years ahead"),
                                        (date(2036, 2, 2), "more than 10 years ahead"),
                                        (date(1, 1, 1), "before the excision date"),
                                        (date(2026, 1, 14), "before the excision date")])
def test_a_plan_date_outside_the_follow_up_is_refused_in_words(due, words):
    with pytest.raises(ValueError, match=words):
        check_plan_date(due, excision_date=EXCISION, today=date(2026, 2, 1))


@pytest.mark.parametrize("due", [EXCISION, date(2026, 1, 20), date(2036, 2, 1)])
def test_plan_dates_from_the_excision_to_ten_years_ahead_are_accepted(due):
    check_plan_date(due, excision_date=EXCISION, today=date(2026, 2, 1))
