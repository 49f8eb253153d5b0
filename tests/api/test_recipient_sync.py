"""A full sync: "these are all the active employees", over several uploads, with a dry run."""

import pytest

from campaigns.models import Recipient
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def upload(api, sync_id, *external_ids):
    response = api.post(
        "/api/v1/recipients/bulk/",
        {"sync": sync_id, "recipients": [{"external_id": e} for e in external_ids]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_sync_deactivates_whoever_it_did_not_list_after_a_dry_run(api):
    for external_id in ("stays", "leaves", "left-already"):
        factories.recipient(external_id=external_id)
    Recipient.objects.filter(external_id="left-already").update(is_active=False)
    sync = api.post("/api/v1/recipients/syncs/", {}, format="json").json()
    upload(api, sync["id"], "stays", "new-1")
    upload(api, sync["id"], "new-2")

    dry = api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": True}, format="json")
    assert dry.json() == {"listed": 3, "deactivated": 1, "dry_run": True}
    assert Recipient.objects.get(external_id="leaves").is_active

    done = api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": False}, format="json")

    assert done.json() == {"listed": 3, "deactivated": 1, "dry_run": False}
    active = set(Recipient.objects.filter(is_active=True).values_list("external_id", flat=True))
    assert active == {"stays", "new-1", "new-2"}
    assert api.get(f"/api/v1/recipients/syncs/{sync['id']}/").json()["deactivated"] == 1


def test_a_sync_that_listed_nobody_cannot_deactivate_everyone(api):
    factories.recipient()
    sync = api.post("/api/v1/recipients/syncs/", {}, format="json").json()

    response = api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": False}, format="json")

    assert response.status_code == 409 and error_of(response)["code"] == "empty_sync"
    assert Recipient.objects.filter(is_active=True).count() == 1


def test_a_finished_sync_takes_no_more_uploads_and_cannot_finish_twice(api):
    sync = api.post("/api/v1/recipients/syncs/", {}, format="json").json()
    upload(api, sync["id"], "a")
    api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": False}, format="json")

    late = api.post("/api/v1/recipients/bulk/", {"sync": sync["id"], "recipients": [{"external_id": "b"}]}, format="json")
    again = api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": False}, format="json")

    assert late.status_code == again.status_code == 409
    assert not Recipient.objects.filter(external_id="b").exists()


def test_an_unknown_sync_is_a_400_naming_it(api):
    response = api.post("/api/v1/recipients/bulk/", {"sync": 424242, "recipients": [{"external_id": "x"}]}, format="json")
    assert response.status_code == 400 and "sync" in error_of(response)["fields"]


def test_a_sync_row_naming_only_the_external_id_keeps_the_person_reachable(api):
    known = factories.recipient(external_id="E1001", department="Sales", country="FR")
    factories.recipient(external_id="gone")
    sync = api.post("/api/v1/recipients/syncs/", {}, format="json").json()
    upload(api, sync["id"], "E1001")

    dry = api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": True}, format="json")

    assert dry.json() == {"listed": 1, "deactivated": 1, "dry_run": True}
    kept = Recipient.objects.get(external_id="E1001")
    assert (kept.aad_object_id, kept.department, kept.country, kept.is_active) == (
        known.aad_object_id, "Sales", "FR", True
    )


def test_a_sync_row_refused_for_a_bad_field_still_lists_its_person_so_a_typo_deactivates_nobody(api):
    factories.recipient(external_id="typo", department="Sales", country="FR")
    factories.recipient(external_id="gone")
    taken = factories.recipient(external_id="owner").aad_object_id
    factories.recipient(external_id="clash", department="Legal")
    sync = api.post("/api/v1/recipients/syncs/", {}, format="json").json()

    response = api.post(
        "/api/v1/recipients/bulk/",
        {"sync": sync["id"], "recipients": [
            {"external_id": "owner"},
            {"external_id": "typo", "country": "France", "department": "Legal"},
            {"external_id": "clash", "aad_object_id": str(taken), "department": "Sales"},
            {"external_id": "never-seen", "start_date": "01/05/2024"},
        ]},
        format="json",
    )
    done = api.post(f"/api/v1/recipients/syncs/{sync['id']}/finish/", {"dry_run": False}, format="json")

    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "country"), (2, "aad_object_id"), (3, "start_date")
    ]
    assert done.json() == {"listed": 3, "deactivated": 1, "dry_run": False}
    active = set(Recipient.objects.filter(is_active=True).values_list("external_id", flat=True))
    assert active == {"owner", "typo", "clash"}
    typo, clash = Recipient.objects.get(external_id="typo"), Recipient.objects.get(external_id="clash")
    assert (typo.country, typo.department, clash.department) == ("FR", "Sales", "Legal")  # the refused rows changed nothing else
    assert not Recipient.objects.filter(external_id="never-seen").exists()


def test_a_refused_row_outside_a_sync_lists_nobody(api):
    factories.recipient(external_id="typo")

    api.post("/api/v1/recipients/bulk/", {"recipients": [{"external_id": "typo", "country": "France"}]}, format="json")

    assert Recipient.objects.get(external_id="typo").last_sync is None
