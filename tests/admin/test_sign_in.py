"""Staff sign in to the admin with Entra ID, through msal against the emulator's Entra ID over real HTTPS: the
login page's link, the emulator's sign-in page, the callback, and the admin that follows; and the personal tab
that shows the admin inside Teams."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from campaigns.roles import AUTHORS

pytestmark = pytest.mark.django_db
PUBLIC = "https://crier.contoso.test"  # Entra ID takes an http redirect URI only for localhost
CALLBACK = f"{PUBLIC}/admin/sign-in/entra/callback/"


@pytest.fixture
def entra(teams, settings):
    """Staff sign-in on, against the emulator, with two people: an author and someone with no role in Crier."""
    settings.STAFF_SIGN_IN = settings.TEAMS_TAB = True
    settings.STAFF_SIGN_IN_AUTHORITY = teams.authority
    settings.PUBLIC_BASE_URL = PUBLIC
    teams.client.graph_users([
        {"id": str(uuid.uuid4()), "displayName": "Avery Stone", "userPrincipalName": "avery@contoso.com",
         "mail": "avery@contoso.com", "appRoles": ["Crier.Author"]},
        {"id": str(uuid.uuid4()), "displayName": "Nico Roleless", "userPrincipalName": "nico@contoso.com"},
    ])
    teams.client.graph_config(sign_in_redirect_uris=[CALLBACK])
    return teams


def signed_in_as(client, entra, account: str, going: str = "/admin/campaigns/campaign/"):
    start = client.get(reverse("crier-sign-in"), {"next": going})
    assert start.status_code == 302
    answer = entra.client.sign_in_as(start["Location"], account)
    return client.get(reverse("crier-sign-in-callback"), answer)


def test_the_login_page_offers_entra_id_and_the_password_form_while_local_passwords_are_on(client, settings):
    settings.STAFF_SIGN_IN = True
    page = client.get(reverse("admin:login")).content.decode()
    assert 'id="sign-in-entra"' in page and 'id="login-form"' in page

    settings.LOCAL_PASSWORDS = False
    page = client.get(reverse("admin:login")).content.decode()
    assert 'id="sign-in-entra"' in page and 'id="login-form"' not in page

    settings.STAFF_SIGN_IN = False
    assert 'id="sign-in-entra"' not in client.get(reverse("admin:login")).content.decode()
    assert client.get(reverse("crier-sign-in")).status_code == 404
    assert client.get(reverse("crier-sign-in-callback")).status_code == 404


def test_a_person_with_a_role_signs_in_with_pkce_and_lands_where_they_were_going(client, entra):
    start = client.get(reverse("crier-sign-in"), {"next": "/admin/campaigns/campaign/"})
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [CALLBACK]
    assert start["Location"].startswith(entra.authority)

    answer = entra.client.sign_in_as(start["Location"], "avery@contoso.com")
    landed = client.get(reverse("crier-sign-in-callback"), answer)

    assert landed.status_code == 302 and landed["Location"] == "/admin/campaigns/campaign/"
    user = User.objects.get(username="avery@contoso.com")
    assert set(user.groups.values_list("name", flat=True)) == {AUTHORS}
    assert client.get("/admin/campaigns/campaign/").status_code == 200
    assert int(client.session["_auth_user_id"]) == user.pk
    # the answer is used once: the flow it belonged to is gone, so Entra ID is not even asked to redeem it again
    redeemed = entra.client.graph_stats()["codes_redeemed"]
    again = client.get(reverse("crier-sign-in-callback"), answer, follow=True)
    assert "was not started here" in again.content.decode()
    assert entra.client.graph_stats()["codes_redeemed"] == redeemed


def test_a_person_without_a_role_is_refused_with_the_reason_on_the_login_page(client, entra):
    refused = signed_in_as(client, entra, "nico@contoso.com")

    assert refused.status_code == 302 and refused["Location"] == reverse("admin:login")
    page = client.get(refused["Location"]).content.decode()
    assert "no role in Crier" in page
    assert not User.objects.filter(username="nico@contoso.com").exists() and "_auth_user_id" not in client.session


def test_an_answer_for_another_sign_in_is_refused(client, entra):
    start = client.get(reverse("crier-sign-in"))
    answer = entra.client.sign_in_as(start["Location"], "avery@contoso.com")

    forged = client.get(reverse("crier-sign-in-callback"), {**answer, "state": "someone-elses"}, follow=True)

    assert "does not belong to this sign-in" in forged.content.decode() and "_auth_user_id" not in client.session


def test_it_never_sends_anyone_to_another_site_after_signing_in(client, entra):
    landed = signed_in_as(client, entra, "avery@contoso.com", going="https://evil.example/admin/")

    assert landed.status_code == 302 and landed["Location"] == reverse("admin:index")


def test_with_local_passwords_off_a_password_signs_nobody_in_and_entra_sessions_still_work(client, entra, settings):
    User.objects.create_superuser("root", "root@example.com", "a strong local password")
    settings.LOCAL_PASSWORDS = False
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "campaigns.sign_in.EntraBackend"]

    refused = client.post(reverse("admin:login"), {"username": "root", "password": "a strong local password"})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    signed_in_as(client, entra, "avery@contoso.com")
    assert client.get("/admin/campaigns/campaign/").status_code == 200


def test_the_tab_shows_the_admin_to_signed_in_staff_and_otherwise_offers_to_sign_in(client, entra):
    page = client.get(reverse("crier-tab"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="tab-sign-in"' in html and "vendor/teams-js/MicrosoftTeams.min.js" in html
    assert "/tab/signed-in/" in html  # where the sign-in window Teams opens ends

    signed_in_as(client, entra, "avery@contoso.com", going=reverse("crier-tab-signed-in"))
    assert client.get(reverse("crier-tab"))["Location"] == reverse("admin:index")


def test_the_sign_in_lasts_a_working_day_then_entra_id_is_asked_again(client, entra, settings):
    settings.STAFF_SIGN_IN_SESSION_HOURS = 8
    signed_in_as(client, entra, "avery@contoso.com")

    assert 8 * 3600 - 60 < client.session.get_expiry_age() <= 8 * 3600


def test_an_error_in_an_answer_that_is_not_this_sign_ins_is_not_shown(client, entra):
    client.get(reverse("crier-sign-in"))

    forged = client.get(reverse("crier-sign-in-callback"), {"error": "access_denied", "state": "forged",
                                                            "error_description": "Call 555-0100 to restore access"},
                        follow=True)

    page = forged.content.decode()
    assert "does not belong to this sign-in" in page and "555-0100" not in page


def test_an_account_disabled_in_crier_stays_disabled_and_keeps_no_role(client, entra):
    signed_in_as(client, entra, "avery@contoso.com")
    client.logout()
    User.objects.filter(username="avery@contoso.com").update(is_active=False, is_staff=False)
    User.objects.get(username="avery@contoso.com").groups.clear()

    refused = signed_in_as(client, entra, "avery@contoso.com")

    assert refused["Location"] == reverse("admin:login") and "_auth_user_id" not in client.session
    user = User.objects.get(username="avery@contoso.com")
    assert (user.is_active, user.is_staff, user.groups.count()) == (False, False, 0)


def test_starting_a_sign_in_warns_of_nothing_it_chose_on_purpose(client, entra):
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        client.get(reverse("crier-sign-in"))

    assert [str(w.message) for w in seen if "form_post" in str(w.message)] == []
