"""Staff who sign in with Entra ID (``campaigns.sign_in``): who the id token names, the roles it gives, and the
account kept in step with them at every sign-in."""

from __future__ import annotations

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
