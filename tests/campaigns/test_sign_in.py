"""Staff who sign in with Entra ID (``campaigns.sign_in``): who the id token names, the roles it gives, and the
account kept in step with them at every sign-in."""

from __future__ import annotations

import copy
import time
import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from campaigns.models import AuditEntry, StaffProfile
from campaigns.roles import APPROVERS, AUTHORS, VIEWERS, roles_ensure
from campaigns.sign_in import SignInRefused, identity_of, role_map, staff_account_sync

pytestmark = pytest.mark.django_db
TENANT = "11111111-1111-1111-1111-111111111111"


@pytest.fixture(autouse=True)
def organisation(settings):
    settings.BOT_TENANT_ID = TENANT
    settings.STAFF_SIGN_IN_ROLES = ("Crier.Administrator=administrator,Crier.Approver=approver,Crier.Author=author,"
                                    "Crier.Viewer=viewer,AAAAAAAA-0000-4000-8000-000000000001=author")


def claims(**more) -> dict:
    oid = more.pop("oid", str(uuid.uuid4()))
    return {"tid": TENANT, "oid": oid, "preferred_username": "avery@contoso.com", "name": "Avery Stone",
            "email": "avery@contoso.com", "aud": settings.BOT_APP_ID, "iss": f"https://login.example/{TENANT}/v2.0",
            "exp": time.time() + 3600, **more}


def groups_of(user: User) -> set[str]:
    return set(User.objects.get(pk=user.pk).groups.values_list("name", flat=True))


def test_the_roles_come_from_app_roles_and_from_groups_in_any_case():
    identity = identity_of(claims(roles=["Crier.Approver", "Other.App"], groups=["aaaaaaaa-0000-4000-8000-000000000001"]))

    assert identity.roles == {"approver", "author"}
    assert (identity.username, identity.name, identity.object_id) == ("avery@contoso.com", "Avery Stone",
                                                                       identity.object_id.lower())


def test_a_token_of_another_organisation_or_without_an_object_id_is_refused():
    with pytest.raises(SignInRefused, match="another organisation"):
        identity_of(claims(tid=str(uuid.uuid4()), roles=["Crier.Author"]))
    with pytest.raises(SignInRefused, match="who you are"):
        identity_of(claims(oid="", roles=["Crier.Author"]))


def test_without_a_tenant_of_its_own_crier_signs_nobody_in(settings):
    settings.BOT_TENANT_ID = ""  # a multi-tenant bot: any organisation could give itself Crier's roles
    with pytest.raises(SignInRefused, match="another organisation"):
        identity_of(claims(roles=["Crier.Administrator"]))


@pytest.mark.parametrize("changed", [{"aud": "another-app"}, {"aud": ["another-app"]}, {"exp": time.time() - 1},
                                     {"iss": "https://login.example/22222222-2222-2222-2222-222222222222/v2.0"}])
def test_a_token_meant_for_another_app_issued_for_another_tenant_or_expired_is_refused(changed):
    with pytest.raises(SignInRefused, match="not meant for Crier"):
        identity_of(claims(roles=["Crier.Author"], **changed))


def test_too_many_groups_to_list_says_to_use_an_app_role():
    with pytest.raises(SignInRefused, match="app roles"):
        identity_of(claims(hasgroups=True))  # the organisation's mapping has a group


def test_the_first_sign_in_makes_an_account_without_a_password_and_with_its_roles_and_records_them():
    user = staff_account_sync(identity_of(claims(roles=["Crier.Author"])))

    # no e-mail address from the id token: Entra ID does not check it for every account, and My profile links
    # the person in Teams by it
    assert (user.username, user.email, user.first_name, user.last_name) == ("avery@contoso.com", "", "Avery", "Stone")
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert groups_of(user) == {AUTHORS}
    [entry] = AuditEntry.objects.filter(action=AuditEntry.Action.ROLES_FROM_ENTRA)
    assert entry.detail["after"] == ["author"] and entry.detail["before"] == []


def test_each_sign_in_sets_exactly_the_roles_entra_id_gives_now():
    oid = str(uuid.uuid4())
    user = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author", "Crier.Viewer"])))
    assert groups_of(user) == {AUTHORS, VIEWERS}
    user.groups.add(*roles_ensure().values())  # given by hand in the admin meanwhile

    again = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Approver"])))
    assert again.pk == user.pk and groups_of(user) == {APPROVERS} and not again.is_superuser
    admin = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Administrator"])))

    assert admin.pk == user.pk and groups_of(user) == set() and User.objects.get(pk=user.pk).is_superuser
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ROLES_FROM_ENTRA).count() == 3
    assert StaffProfile.objects.filter(entra_object_id=oid).count() == 1


def test_a_person_without_a_role_is_refused_and_an_account_that_lost_its_roles_loses_them_here_too():
    with pytest.raises(SignInRefused, match="no role"):
        staff_account_sync(identity_of(claims()))
    assert not User.objects.exists()

    oid = str(uuid.uuid4())
    user = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Administrator", "Crier.Author"])))
    with pytest.raises(SignInRefused, match="no longer has a role"):
        staff_account_sync(identity_of(claims(oid=oid)))

    user = User.objects.get(pk=user.pk)
    assert (user.is_staff, user.is_superuser, groups_of(user)) == (False, False, set())


def test_an_account_is_found_by_its_entra_identity_never_by_a_local_accounts_name():
    local = User.objects.create_user("avery@contoso.com", "avery@contoso.com", "a local password", is_staff=True,
                                     is_superuser=True)

    user = staff_account_sync(identity_of(claims(roles=["Crier.Viewer"])))

    assert user.pk != local.pk and user.username.startswith("avery@contoso.com~")
    assert not user.is_superuser and User.objects.get(pk=local.pk).is_superuser  # the local account is untouched


def test_the_role_mapping_refuses_an_unknown_role_naming_it():
    with pytest.raises(ValueError, match="Crier.Boss=boss"):
        role_map("Crier.Author=author,Crier.Boss=boss")
    assert role_map(" A = Author ,, b=viewer") == {"a": "author", "b": "viewer"}


def test_the_checks_name_what_staff_sign_in_lacks(settings):
    from campaigns.checks import staff_sign_in_check

    settings.STAFF_SIGN_IN = True
    settings.STAFF_SIGN_IN_AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
    assert staff_sign_in_check(None) == []
    settings.BOT_TENANT_ID = ""
    settings.STAFF_SIGN_IN_ROLES = "Crier.Author=boss"
    assert {found.id for found in staff_sign_in_check(None)} == {"crier.E003", "crier.E004"}


def test_the_account_is_linked_to_the_person_entra_id_names_in_teams_and_never_by_an_address():
    from tests import factories

    oid = str(uuid.uuid4())
    person = factories.recipient(aad_object_id=oid)
    factories.recipient(email="avery@contoso.com")  # whoever has the address the token names

    user = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author"])))

    assert StaffProfile.objects.get(user=user).recipient == person


def test_roles_from_groups_are_not_guessed_when_entra_id_could_not_list_the_groups(settings):
    settings.STAFF_SIGN_IN_ROLES = "Crier.Author=author,aaaaaaaa-0000-4000-8000-000000000001=approver"
    with pytest.raises(SignInRefused, match="too many groups"):
        identity_of(claims(roles=["Crier.Author"], hasgroups=True))  # an approver, perhaps, by a group
    settings.STAFF_SIGN_IN_ROLES = "Crier.Author=author"  # no group is mapped: the overage changes nothing
    assert identity_of(claims(roles=["Crier.Author"], hasgroups=True)).roles == {"author"}


# --- the flow around msal, each refusal in the words a staff member reads -------------------------------------

class FakeApp:
    """msal's application as sign_in_start and sign_in_finish use it: what it was asked, and what it answers."""

    def __init__(self, answer=None, raises: Exception | None = None) -> None:
        self.answer, self.raises, self.asked = answer, raises, []

    def initiate_auth_code_flow(self, **asked):
        self.asked.append(asked)
        if self.raises:
            raise self.raises
        return {"auth_uri": "https://login.example/authorize?x=1", "state": "the-state"}

    def acquire_token_by_auth_code_flow(self, flow, answer):
        self.asked.append({"flow": flow, "answer": answer})
        if self.raises:
            raise self.raises
        return self.answer


@pytest.fixture
def fake_app(monkeypatch):
    from campaigns import sign_in

    made = FakeApp()
    monkeypatch.setattr(sign_in, "_app", lambda: made)
    return made


def pending(**more) -> dict:
    return {"crier_sign_in_flow": {"flow": {"state": "the-state"}, "next": "/admin/x/", **more}}


def test_a_sign_in_asks_entra_id_to_let_the_person_choose_their_account_and_to_answer_in_the_query(fake_app):
    from campaigns.sign_in import sign_in_start

    session: dict = {}
    address = sign_in_start(session=session, redirect_uri="https://crier.test/cb", next_url="/admin/y/")

    assert address == "https://login.example/authorize?x=1"
    assert fake_app.asked == [{"scopes": [], "redirect_uri": "https://crier.test/cb", "prompt": "select_account",
                               "response_mode": "query"}]
    assert session["crier_sign_in_flow"] == {"flow": {"auth_uri": address, "state": "the-state"}, "next": "/admin/y/"}


def test_entra_id_out_of_reach_at_the_start_is_said_plainly(fake_app):
    import requests

    from campaigns.sign_in import sign_in_start

    fake_app.raises = requests.ConnectionError("refused")
    with pytest.raises(SignInRefused) as refused:
        sign_in_start(session={}, redirect_uri="https://crier.test/cb", next_url="/")
    assert str(refused.value) == "Entra ID could not be reached to sign in (ConnectionError); try again."


@pytest.mark.parametrize(("session", "answer", "said"), [
    ({}, {"state": "the-state", "code": "c"},
     "This sign-in was not started here, or it was already used: sign in again."),
    (pending(), {"state": "another", "code": "c"}, "The answer from Entra ID does not belong to this sign-in: sign in again."),
    (pending(), {"state": "the-state", "error": "access_denied", "error_description": "The person cancelled."},
     "Entra ID did not sign you in: The person cancelled."),
    (pending(), {"state": "the-state", "error": "access_denied"}, "Entra ID did not sign you in: access_denied"),
])
def test_an_answer_that_signs_nobody_in_says_why(fake_app, session, answer, said):
    from campaigns.sign_in import sign_in_finish

    session = copy.deepcopy(session)  # the parameters are made once, and the sign-in spends the flow

    with pytest.raises(SignInRefused) as refused:
        sign_in_finish(session=session, answer=answer)

    assert str(refused.value) == said
    assert fake_app.asked == []  # msal was not even asked
    assert "crier_sign_in_flow" not in session  # and the flow is spent


@pytest.mark.parametrize(("answer", "raises", "said"), [
    ({"error": "invalid_grant", "error_description": "AADSTS70008: expired."}, None,
     "Entra ID did not sign you in: AADSTS70008: expired."),
    ({"error": "invalid_grant"}, None, "Entra ID did not sign you in: invalid_grant"),
    (None, ValueError("state mismatch"), "The answer from Entra ID does not belong to this sign-in: sign in again."),
    (None, RuntimeError("nonce mismatch"), "The answer from Entra ID does not belong to this sign-in: sign in again."),
])
def test_what_entra_id_refuses_when_the_code_is_redeemed_is_said(fake_app, answer, raises, said):
    from campaigns.sign_in import sign_in_finish

    fake_app.answer, fake_app.raises = answer, raises
    with pytest.raises(SignInRefused) as refused:
        sign_in_finish(session=pending(), answer={"state": "the-state", "code": "c"})

    assert str(refused.value) == said
    assert fake_app.asked == [{"flow": {"state": "the-state"}, "answer": {"state": "the-state", "code": "c"}}]


def test_entra_id_out_of_reach_at_the_end_and_a_long_refusal_are_said_plainly(fake_app):
    import requests

    from campaigns.sign_in import sign_in_finish

    fake_app.raises = requests.Timeout("slow")
    with pytest.raises(SignInRefused) as refused:
        sign_in_finish(session=pending(), answer={"state": "the-state"})
    assert str(refused.value) == "Entra ID could not be reached to finish signing in (Timeout)."

    fake_app.raises, fake_app.answer = None, {"error": "x", "error_description": "y" * 600}
    with pytest.raises(SignInRefused) as refused:
        sign_in_finish(session=pending(), answer={"state": "the-state"})
    assert len(str(refused.value)) == 500


def test_a_sign_in_lands_where_it_was_going_or_nowhere_in_particular(fake_app):
    from campaigns.sign_in import sign_in_finish

    fake_app.answer = {"id_token_claims": claims(roles=["Crier.Author"])}
    user, going = sign_in_finish(session=pending(), answer={"state": "the-state"})
    assert (user.username, going) == ("avery@contoso.com", "/admin/x/")

    fake_app.answer = {"id_token_claims": claims(roles=["Crier.Author"])}
    assert sign_in_finish(session={"crier_sign_in_flow": {"flow": {"state": "s"}}}, answer={"state": "s"})[1] == ""


def test_msal_is_built_for_the_organisation_with_the_timeout_and_a_cache_of_its_own_each_time(settings, monkeypatch):
    import msal

    from campaigns import sign_in

    built = []
    monkeypatch.setattr(msal, "ConfidentialClientApplication", lambda *args, **kwargs: built.append((args, kwargs)))
    settings.BOT_HTTP_TIMEOUT_SECONDS = 7.5
    settings.STAFF_SIGN_IN_AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
    sign_in._app()
    settings.STAFF_SIGN_IN_AUTHORITY = f"https://127.0.0.1:9443/{TENANT}"
    sign_in._app()

    (args, first), (_, second) = built
    assert args == (settings.BOT_APP_ID,) and first["client_credential"] == settings.BOT_APP_PASSWORD
    assert (first["authority"], first["instance_discovery"], second["instance_discovery"]) == (
        f"https://login.microsoftonline.com/{TENANT}", True, False)
    assert first["timeout"] == 7.5 and first["http_cache"] is sign_in._DISCOVERY
    assert isinstance(first["token_cache"], msal.TokenCache) and first["token_cache"] is not second["token_cache"]


# --- the account ----------------------------------------------------------------------------------------------

def test_the_same_object_id_in_another_tenant_or_another_in_this_one_is_another_account(settings):
    from campaigns.sign_in import Identity

    oid = str(uuid.uuid4())
    mine = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author"])))
    elsewhere = staff_account_sync(Identity(tenant_id="22222222-2222-2222-2222-222222222222", object_id=oid,
                                            username="x@other.test", name="X", roles=frozenset({"viewer"})))
    other = staff_account_sync(identity_of(claims(roles=["Crier.Author"])))

    assert len({mine.pk, elsewhere.pk, other.pk}) == 3


def test_refusals_about_the_account_say_what_to_do():
    with pytest.raises(SignInRefused) as refused:
        staff_account_sync(identity_of(claims()))
    assert str(refused.value) == "Your account has no role in Crier: ask an administrator to assign you one (docs/going-live.md)."

    oid = str(uuid.uuid4())
    user = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author"])))
    User.objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(SignInRefused) as refused:
        staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author"])))
    assert str(refused.value) == "This account is disabled in Crier: ask an administrator."


def test_the_audit_entry_names_the_account_its_roles_now_and_before():
    oid = str(uuid.uuid4())
    user = staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author", "Crier.Viewer"])))
    with pytest.raises(SignInRefused):
        staff_account_sync(identity_of(claims(oid=oid)))

    first, lost = AuditEntry.objects.filter(action=AuditEntry.Action.ROLES_FROM_ENTRA).order_by("id")
    assert (first.user, first.summary) == (user, "avery@contoso.com's roles from Entra ID: author, viewer (before: none)")
    assert first.detail == {"before": [], "after": ["author", "viewer"], "object_id": oid}
    assert (lost.user, lost.summary) == (None, "avery@contoso.com's roles from Entra ID: none (before: author, viewer)")


def test_the_sign_in_is_recorded_on_the_profile():
    user = staff_account_sync(identity_of(claims(roles=["Crier.Author"])))

    assert StaffProfile.objects.get(user=user).signed_in_at is not None


def test_names_are_split_at_the_first_space_and_kept_within_the_columns():
    long_name = "Mary " + "A" * 200
    user = staff_account_sync(identity_of(claims(name="Mary Ann Smith", roles=["Crier.Author"])))
    assert (user.first_name, user.last_name) == ("Mary", "Ann Smith")

    other = staff_account_sync(identity_of(claims(name=long_name, preferred_username="m@contoso.com",
                                                  roles=["Crier.Author"])))
    assert (other.first_name, len(other.last_name)) == ("Mary", 145)
    assert len(User.objects.get(pk=other.pk).last_name) == 145


def test_a_taken_username_gets_the_object_ids_start_within_djangos_length():
    oid = str(uuid.uuid4())
    wanted = "a" * 150
    User.objects.create_user(wanted)

    user = staff_account_sync(identity_of(claims(oid=oid, preferred_username=wanted, roles=["Crier.Author"])))

    assert user.username == f"{'a' * 140}~{oid[:8]}"


def test_two_first_sign_ins_at_once_give_one_account():
    from campaigns.sign_in import _account_create

    staff_account_sync(identity_of(claims(preferred_username="first@contoso.com", roles=["Crier.Viewer"])))
    identity = identity_of(claims(roles=["Crier.Author"]))
    made = staff_account_sync(identity)

    assert _account_create(identity).user == made  # the other one got there first



def test_an_administrator_becoming_an_author_is_recorded_as_such_and_one_without_roles_is_told_so():
    oid = str(uuid.uuid4())
    staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Administrator"])))
    staff_account_sync(identity_of(claims(oid=oid, roles=["Crier.Author"])))
    with pytest.raises(SignInRefused) as refused:
        staff_account_sync(identity_of(claims(oid=oid)))

    entries = AuditEntry.objects.filter(action=AuditEntry.Action.ROLES_FROM_ENTRA).order_by("id")
    assert [(e.detail["before"], e.detail["after"]) for e in entries] == [
        ([], ["administrator"]), (["administrator"], ["author"]), (["author"], [])]
    assert str(refused.value) == "Your account no longer has a role in Crier: ask an administrator to assign you one."


def test_the_answer_and_its_refusals_are_read_whatever_the_case_of_the_tenant(settings):
    settings.BOT_TENANT_ID = "ABCDEF01-2345-6789-ABCD-EF0123456789"
    tenant = settings.BOT_TENANT_ID.lower()
    found = identity_of(claims(tid=tenant.upper(), iss=f"https://login.example/{tenant}/v2.0",
                               aud=[settings.BOT_APP_ID], roles=["Crier.Author"]))
    assert found.tenant_id == tenant  # an audience given as a list of one is Crier's too

    with pytest.raises(SignInRefused) as refused:
        identity_of(claims(tid="", roles=["Crier.Author"]))
    assert str(refused.value) == "Entra ID's answer does not say who you are (no tenant or object id)."
    with pytest.raises(SignInRefused) as refused:
        identity_of(claims(tid=str(uuid.uuid4()), roles=["Crier.Author"]))
    assert str(refused.value) == ("This account belongs to another organisation than Crier's: sign in with your work "
                                  "account.")


def test_a_role_mapping_entry_is_split_at_its_first_equals_sign():
    with pytest.raises(ValueError) as refused:
        role_map("Crier=Author=author")
    assert str(refused.value) == ("STAFF_SIGN_IN_ROLES: 'Crier=Author=author' is not value=role with a role among "
                                  "author, approver, viewer, administrator")


def test_a_long_refusal_in_entra_ids_answer_is_cut_to_what_the_page_shows(fake_app):
    from campaigns.sign_in import sign_in_finish

    with pytest.raises(SignInRefused) as refused:
        sign_in_finish(session=copy.deepcopy(pending()),
                       answer={"state": "the-state", "error": "x", "error_description": "y" * 600})
    assert len(str(refused.value)) == 500


def test_a_token_not_meant_for_crier_is_refused_in_words(settings):
    with pytest.raises(SignInRefused) as refused:
        identity_of(claims(aud="another-app", roles=["Crier.Author"]))
    assert str(refused.value) == "Entra ID's answer was not meant for Crier, or has expired: sign in again."


@pytest.mark.parametrize("overage", [{"hasgroups": True}, {"_claim_names": {"groups": "src1"}}])
def test_both_ways_entra_id_says_it_could_not_list_the_groups_are_heard(overage):
    with pytest.raises(SignInRefused) as refused:
        identity_of(claims(roles=["Crier.Author"], **overage))
    assert str(refused.value) == ("You are in too many groups for Entra ID to list them in the sign-in: ask an "
                                  "administrator to give you one of Crier's app roles instead (docs/going-live.md).")


def test_a_username_and_a_name_are_kept_within_djangos_columns_and_none_is_no_name():
    found = identity_of(claims(preferred_username="p" * 160, name="", roles=["Crier.Author"]))
    assert len(found.username) == 150 and found.name == ""

    user = staff_account_sync(found)
    assert (len(user.username), user.first_name, user.last_name) == (150, "", "")


def test_an_account_that_cannot_be_made_is_a_refusal_to_try_again(monkeypatch):
    from campaigns import sign_in

    User.objects.create_user("taken@contoso.com")
    monkeypatch.setattr(sign_in, "_free_username", lambda wanted, object_id: "taken@contoso.com")

    with pytest.raises(SignInRefused) as refused:
        staff_account_sync(identity_of(claims(roles=["Crier.Author"])))
    assert str(refused.value) == "Your account could not be made just now: sign in again."


def test_the_account_another_sign_in_made_is_found_by_tenant_and_object_id_both():
    from campaigns.sign_in import Identity, _account_create

    oid = str(uuid.uuid4())
    staff_account_sync(Identity(tenant_id="22222222-2222-2222-2222-222222222222", object_id=oid,
                                username="x@other.test", name="X", roles=frozenset({"viewer"})))
    identity = identity_of(claims(oid=oid, roles=["Crier.Author"]))
    made = staff_account_sync(identity)

    assert _account_create(identity).user == made
