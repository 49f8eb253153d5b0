import pytest

from campaigns.models import OptOut
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def test_opt_out_is_recorded_once_and_recording_it_again_returns_it(api):
    factories.recipient(external_id="ann")
    factories.category(slug="social")

    first = api.post("/api/v1/opt-outs/", {"recipient": "ann", "category": "social", "note": "asked HR"}, format="json")
    second = api.post("/api/v1/opt-outs/", {"recipient": "ann", "category": "social"}, format="json")

    assert first.status_code == 201, first.json()
    assert second.status_code == 200
    assert second.json() == first.json()
    assert (first.json()["source"], first.json()["note"]) == ("api", "asked HR")
    assert OptOut.objects.count() == 1


def test_opt_out_of_everything_has_no_category(api):
    factories.recipient(external_id="ann")

    response = api.post("/api/v1/opt-outs/", {"recipient": "ann", "category": None}, format="json")

    assert response.status_code == 201
    assert response.json()["category"] is None
    assert OptOut.objects.get().category is None


def test_opt_out_of_a_mandatory_category_is_refused(api):
    factories.recipient(external_id="ann")
    factories.category(slug="security", mandatory=True)

    response = api.post("/api/v1/opt-outs/", {"recipient": "ann", "category": "security"}, format="json")

    assert response.status_code == 400
    assert "mandatory" in error_of(response)["fields"]["category"][0]


def test_opt_out_for_an_unknown_person_is_refused_naming_recipient(api):
    response = api.post("/api/v1/opt-outs/", {"recipient": "ghost"}, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["recipient"]


def test_opt_outs_are_listed_by_person_and_deleting_one_opts_back_in(api):
    ann, bob = factories.recipient(external_id="ann"), factories.recipient(external_id="bob")
    social = factories.category(slug="social")
    mine = OptOut.objects.create(recipient=ann, category=social, source=OptOut.Source.TYPED_STOP)
    OptOut.objects.create(recipient=bob, category=None, source=OptOut.Source.API)

    by_person = api.get("/api/v1/opt-outs/", {"recipient": "ann"}).json()["results"]
    by_source = api.get("/api/v1/opt-outs/", {"source": "api"}).json()["results"]
    by_category = api.get("/api/v1/opt-outs/", {"category": "social"}).json()["results"]
    deleted = api.delete(f"/api/v1/opt-outs/{mine.pk}/")

    assert [(o["recipient"], o["category"], o["source"]) for o in by_person] == [("ann", "social", "typed_stop")]
    assert [o["recipient"] for o in by_source] == ["bob"]
    assert [o["id"] for o in by_category] == [mine.pk]
    assert deleted.status_code == 204
    assert list(OptOut.objects.values_list("recipient__external_id", flat=True)) == ["bob"]
