"""The Teams app package: what its manifest declares, the checks that refuse what Teams would, the icons,
and the two ways to get it (the command, and the admin's download for superusers)."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zipfile
import zlib

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from bots import app_package
from bots.app_package import app_package_build, icon_problem, manifest, manifest_problems
from core.errors import ApplicationError
from tests.admin.conftest import messages_of

BOT = "00000000-0000-0000-0000-00000000b07a"


@pytest.fixture(autouse=True)
def configured(settings):
    settings.BOT_APP_ID = BOT
    settings.PUBLIC_BASE_URL = "https://crier.contoso.com"
    settings.TEAMS_APP_ID = ""
    settings.TEAMS_APP_VALID_DOMAINS = []
    settings.TEAMS_APP_COLOR_ICON = settings.TEAMS_APP_OUTLINE_ICON = ""
    settings.TEAMS_APP_WEBSITE_URL = settings.TEAMS_APP_PRIVACY_URL = settings.TEAMS_APP_TERMS_URL = ""
    return settings


def unzipped(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def png_size_and_type(data: bytes) -> tuple[int, int, int]:
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    return width, height, color_type


def test_it_declares_the_bot_in_personal_and_team_scope_with_read_receipts_and_the_public_host():
    document = manifest()

    assert document["manifestVersion"] == "1.22"
    assert document["$schema"].endswith("/v1.22/MicrosoftTeams.schema.json")
    assert document["bots"][0]["botId"] == BOT
    assert document["bots"][0]["scopes"] == ["personal", "team"]
    assert document["bots"][0]["commandLists"][0]["scopes"] == ["personal"]
    assert document["webApplicationInfo"] == {"id": BOT, "resource": f"api://crier.contoso.com/{BOT}"}
    assert document["authorization"]["permissions"]["resourceSpecific"] == [
        {"name": "ChatMessageReadReceipt.Read.Chat", "type": "Application"}
    ]
    assert document["validDomains"] == ["crier.contoso.com"]
    assert document["developer"]["websiteUrl"] == document["developer"]["privacyUrl"] == "https://crier.contoso.com"
    assert [c["title"] for c in document["bots"][0]["commandLists"][0]["commands"]] == ["stop", "start", "help"]
    assert manifest_problems(document) == {}


def test_it_declares_the_activity_type_of_an_urgent_campaigns_pop_up_and_checks_it():
    from emulator.activity import ACTIVITY_TYPES

    document = manifest()
    [declared] = document["activities"]["activityTypes"]

    assert declared["type"] == "urgentAnnouncement" and declared["type"] in ACTIVITY_TYPES  # what the emulator takes
    assert declared["templateText"] and declared["description"]
    declared["templateText"] = "x" * 129
    assert "128" in manifest_problems(document)["activities.activityTypes.0.templateText"]


def test_its_app_id_is_stable_for_one_bot_and_can_be_set(settings):
    first, again = manifest()["id"], manifest()["id"]
    settings.BOT_APP_ID = "11111111-2222-3333-4444-555555555555"
    other_bot = manifest()["id"]
    settings.TEAMS_APP_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

    assert first == again != other_bot
    assert uuid.UUID(first) and uuid.UUID(other_bot)
    assert manifest()["id"] == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def test_it_lists_the_public_host_alone_without_credentials_or_port(settings):
    settings.PUBLIC_BASE_URL = "https://ops:secret@Crier.Contoso.com:8443/crier"

    assert manifest()["validDomains"] == ["crier.contoso.com"]


def test_it_lists_extra_domains_once_each_after_the_public_host(settings):
    settings.TEAMS_APP_VALID_DOMAINS = ["Links.Contoso.com", "crier.contoso.com", "*.intranet.contoso.com"]

    assert manifest()["validDomains"] == ["crier.contoso.com", "links.contoso.com", "*.intranet.contoso.com"]


@pytest.mark.parametrize(
    "setting, value, field, says",
    [
        ("BOT_APP_ID", "", "bots.0.botId", "must be a GUID"),
        ("BOT_APP_ID", "not-a-guid", "webApplicationInfo.id", "must be a GUID"),
        ("TEAMS_APP_ID", "12345", "id", "must be a GUID"),
        ("TEAMS_APP_VERSION", "1.0", "version", "such as 1.0.0"),
        ("TEAMS_APP_SHORT_NAME", "C" * 31, "name.short", "is 31 characters; Teams allows at most 30"),
        ("TEAMS_APP_SHORT_NAME", "  ", "name.short", "is required"),
        ("TEAMS_APP_FULL_NAME", "F" * 101, "name.full", "at most 100"),
        ("TEAMS_APP_SHORT_DESCRIPTION", "d" * 81, "description.short", "at most 80"),
        ("TEAMS_APP_FULL_DESCRIPTION", "d" * 4001, "description.full", "at most 4000"),
        ("TEAMS_APP_DEVELOPER_NAME", "n" * 33, "developer.name", "at most 32"),
        ("TEAMS_APP_PRIVACY_URL", "http://contoso.com/privacy", "developer.privacyUrl", "https://"),
        ("TEAMS_APP_ACCENT_COLOR", "purple", "accentColor", "such as #4F52B2"),
        ("TEAMS_APP_VALID_DOMAINS", ["https://contoso.com/path"], "validDomains.1", "is not a domain"),
        ("TEAMS_APP_VALID_DOMAINS", ["*.com"], "validDomains.1", "is not a domain"),
        ("PUBLIC_BASE_URL", "", "developer.websiteUrl", "set PUBLIC_BASE_URL"),
    ],
)
def test_it_refuses_what_teams_would_naming_the_field(settings, setting, value, field, says):
    setattr(settings, setting, value)

    with pytest.raises(ApplicationError) as refused:
        app_package_build()

    assert says in refused.value.fields[field]
    assert field in refused.value.message


def test_it_refuses_more_than_sixteen_domains(settings):
    settings.TEAMS_APP_VALID_DOMAINS = [f"d{n}.contoso.com" for n in range(16)]

    assert manifest_problems(manifest()) == {"validDomains": "lists 17 domains; Teams allows at most 16"}


@pytest.mark.parametrize("scopes", [["personal"], ["personal", "team", "groupChat"], ["team"]])
def test_it_refuses_a_bot_in_scopes_other_than_personal_and_team(scopes):
    document = manifest()
    document["bots"][0]["scopes"] = scopes

    assert list(manifest_problems(document)) == ["bots.0.scopes"]


def test_it_zips_the_manifest_and_two_icons_of_the_sizes_teams_asks_for():
    files = unzipped(app_package_build())

    assert sorted(files) == ["color.png", "manifest.json", "outline.png"]
    assert json.loads(files["manifest.json"]) == manifest()
    assert png_size_and_type(files["color.png"]) == (192, 192, 6)
    assert png_size_and_type(files["outline.png"]) == (32, 32, 6)
    assert icon_problem(files["color.png"], size=192, transparent=False) is None
    assert icon_problem(files["outline.png"], size=32, transparent=True) is None


def test_its_outline_icon_is_a_white_shape_on_transparent():
    pixels = {(x, y): app_package._bubble((x + 0.5) / 32, (y + 0.5) / 32) for x in range(32) for y in range(32)}
    inked = sum(pixels.values())

    assert 0 < inked < 32 * 32 / 2  # a shape, not a square
    assert not pixels[(0, 0)] and not pixels[(31, 31)]  # the corners are background
    raw = unzipped(app_package_build())["outline.png"]
    data = zlib.decompress(raw[raw.index(b"IDAT") + 4:raw.index(b"IEND") - 8])
    rows = [data[y * (1 + 32 * 4) + 1:(y + 1) * (1 + 32 * 4)] for y in range(32)]
    colours = {bytes(row[x * 4:x * 4 + 4]) for row in rows for x in range(32)}
    assert colours == {b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"}


def test_it_takes_the_icons_named_in_settings_and_refuses_wrong_ones(settings, tmp_path):
    color, outline = tmp_path / "color.png", tmp_path / "outline.png"
    color.write_bytes(app_package._drawn_icon(192, (1, 2, 3, 255), (4, 5, 6, 255)))
    outline.write_bytes(app_package.outline_icon())
    settings.TEAMS_APP_COLOR_ICON, settings.TEAMS_APP_OUTLINE_ICON = str(color), str(outline)

    assert unzipped(app_package_build())["color.png"] == color.read_bytes()

    outline.write_bytes(app_package._drawn_icon(48, (0, 0, 0, 0), (255, 255, 255, 255)))
    with pytest.raises(ApplicationError, match="is 48x48 pixels; Teams needs 32x32") as refused:
        app_package_build()
    assert list(refused.value.fields) == ["TEAMS_APP_OUTLINE_ICON"]

    outline.write_bytes(b"GIF89a not a png")
    with pytest.raises(ApplicationError, match="is not a PNG image"):
        app_package_build()

    settings.TEAMS_APP_OUTLINE_ICON = str(tmp_path / "missing.png")
    with pytest.raises(ApplicationError, match="cannot be read"):
        app_package_build()


def test_it_refuses_an_outline_icon_without_transparency():
    opaque = bytearray(app_package.outline_icon())
    opaque[25] = 2  # the IHDR's colour type: RGB, no alpha

    assert "no transparency" in icon_problem(bytes(opaque), size=32, transparent=True)
    assert icon_problem(bytes(opaque), size=32, transparent=False) is None


def test_the_command_writes_the_package(tmp_path, capsys):
    out = tmp_path / "crier.zip"

    call_command("teams_app_package", "--out", str(out))

    assert sorted(unzipped(out.read_bytes())) == ["color.png", "manifest.json", "outline.png"]
    assert f"Wrote {out}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["crier.zip"]  # nothing left beside it


def test_the_command_says_what_is_wrong_and_writes_nothing(settings, tmp_path):
    settings.BOT_APP_ID = ""
    out = tmp_path / "crier.zip"

    with pytest.raises(CommandError, match=r"bots\.0\.botId must be a GUID"):
        call_command("teams_app_package", "--out", str(out))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("teams_app_package", "--out", str(tmp_path / "nowhere" / "crier.zip"))
    with pytest.raises(CommandError, match="is a folder"):
        call_command("teams_app_package", "--out", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_a_superuser_downloads_it_from_the_admin(admin_client):
    listing = admin_client.get("/admin/bots/teamsaddress/")
    response = admin_client.get("/admin/bots/teamsaddress/app-package/")

    assert "Download the Teams app package" in listing.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="crier-teams-app.zip"'
    assert "manifest.json" in unzipped(response.content)


@pytest.mark.django_db
def test_the_admin_shows_why_it_cannot_build_it(admin_client, settings):
    settings.TEAMS_APP_ACCENT_COLOR = "purple"

    response = admin_client.get("/admin/bots/teamsaddress/app-package/", follow=True)

    assert response.redirect_chain[-1][0] == "/admin/bots/teamsaddress/"
    assert any(level == "error" and "accentColor must be a colour" in text for level, text in messages_of(response))


@pytest.mark.django_db
def test_staff_who_are_not_superusers_cannot_download_it(client):
    staff = User.objects.create_user("casey", "casey@example.com", "not-a-superuser", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_teamsaddress"))
    client.force_login(staff)

    assert client.get("/admin/bots/teamsaddress/").status_code == 200

    assert client.get("/admin/bots/teamsaddress/app-package/").status_code == 403
    assert "Download the Teams app package" not in client.get("/admin/bots/teamsaddress/").content.decode()


def test_it_carries_a_personal_tab_that_opens_the_admin_over_https_unless_switched_off(settings):
    settings.TEAMS_TAB = True
    [tab] = manifest()["staticTabs"]
    assert tab["contentUrl"] == "https://crier.contoso.com/tab/" and tab["scopes"] == ["personal"]
    assert tab["websiteUrl"] == "https://crier.contoso.com/admin/"

    settings.PUBLIC_BASE_URL = "http://crier.contoso.com"
    problems = manifest_problems(manifest())
    assert "https" in problems["staticTabs.0.contentUrl"] and "PUBLIC_BASE_URL" in problems["staticTabs.0.contentUrl"]

    settings.TEAMS_TAB = False
    assert "staticTabs" not in manifest()
