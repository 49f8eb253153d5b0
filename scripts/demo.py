#!/usr/bin/env python
"""`make demo`: runs Crier on its defaults against the Teams emulator and shows it working.

Starts the emulator, the web server, a Celery worker and Celery beat; seeds a demo organisation;
has the new starters install the bot (they get the welcome message) and one person block it;
launches an announcement through the REST API and prints its progress; then keeps everything
running until Ctrl-C (or exits at once with DEMO_EXIT=1)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = ROOT / "var"
PYTHON = sys.executable
WEB_PORT = int(os.environ.get("DEMO_WEB_PORT", "8000"))
EMULATOR_PORT = int(os.environ.get("DEMO_EMULATOR_PORT", "9443"))
PEOPLE = int(os.environ.get("DEMO_PEOPLE", "200"))
children: list[subprocess.Popen] = []
stoppers: list = []  # what else to stop at the end (the emulator)


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(VAR / "log" / f"{name}.log", "ab")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children.append(process)
    say(f"started {name} (pid {process.pid}, log var/log/{name}.log)")
    return process


def stop_all(*_: object) -> None:
    for process in reversed(children):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in children:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    for stop in stoppers:  # the emulator last: the others call it
        stop()


def wait_for(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in children:
            if process.poll() is not None:
                raise SystemExit(f"[demo] a process stopped early (exit {process.returncode}); see var/log/")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"[demo] {what} did not come up within {timeout:.0f} s; see var/log/")


def api(method: str, path: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{WEB_PORT}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def launched_to_its_end(key: str, campaign: dict) -> dict:
    """Creates the campaign through the API, launches it and waits (two minutes at most) until it has ended or
    stopped; returns it as the API last gave it."""
    made = api("POST", "/api/v1/campaigns/", key, campaign)
    api("POST", f"/api/v1/campaigns/{made['id']}/launch/", key, {})
    started = time.monotonic()
    while (body := api("GET", f"/api/v1/campaigns/{made['id']}/", key))["status"] not in ("completed", "cancelled",
                                                                                          "paused", "draft"):
        if time.monotonic() - started > 120:
            break
        time.sleep(1)
    return body


FALCON_TEAM = "19:projectFalconDemo@thread.tacv2"
LEEDS_GROUP, WAREHOUSE_GROUP = "d0000000-0000-4000-8000-00000000a001", "d0000000-0000-4000-8000-00000000a002"


def group_and_team(emulator, env: dict[str, str], key: str, announcement: dict, people: list[dict]) -> bool:
    """An Entra ID group (with a nested one) and a team whose new members never installed the app: an audience
    and a campaign for each, listed at launch and sent. Returns whether both completed."""
    falcon = [{"id": f"f0000000-0000-4000-8000-{n:012d}", "displayName": f"Falcon Engineer {n}"} for n in range(1, 7)]
    emulator.graph_users(falcon)
    synced = subprocess.run([PYTHON, "manage.py", "sync_entra"], cwd=ROOT, env=env, check=True, capture_output=True,
                            text=True).stdout.strip()
    say(f"six engineers joined in Entra ID, none of them has the app yet; the next sync: {synced}")
    emulator.graph_groups([
        {"id": LEEDS_GROUP, "displayName": "Leeds office", "members": [p["aad_object_id"] for p in people[10:30]]
         + [WAREHOUSE_GROUP]},
        {"id": WAREHOUSE_GROUP, "displayName": "Leeds warehouse", "membershipRule": 'user.department -eq "Warehouse"',
         "members": [p["aad_object_id"] for p in people[30:40]]},
    ])
    emulator.teams_create("Project Falcon", [f["id"] for f in falcon] + [p["aad_object_id"] for p in people[40:42]],
                          id=FALCON_TEAM)
    emulator.team_install(FALCON_TEAM)
    say("the bot was added to the team Project Falcon; the group Leeds office holds the group Leeds warehouse")
    existing = {a["name"]: a for a in api("GET", "/api/v1/audiences/?page_size=100", key)["results"]}
    finished = True
    for name, kind, source in (("Leeds office", "entra_group", LEEDS_GROUP), ("Project Falcon", "team", FALCON_TEAM)):
        audience = existing.get(name) or api("POST", "/api/v1/audiences/", key,
                                             {"name": name, "kind": kind, "source_id": source, "source_name": name})
        body = launched_to_its_end(key, {
            "name": f"News for {name}", "kind": "announcement", "template": announcement["template"],
            "audience": audience["id"], "category": announcement["category"]})
        listing, counts = body["listing"] or {}, body["counts"]
        say(f"{name} ({kind}): listed {listing.get('listed')} members at launch, {listing.get('unknown')} unknown to "
            f"Crier; {body['status']}: sent {counts['sent']}, failed {counts['failed']}, skipped {counts['skipped']}")
        finished = finished and body["status"] == "completed"
    return finished


NEW_JOINERS = "d0000000-0000-4000-8000-00000000a003"


def install_for_new_joiners(emulator, env: dict[str, str], key: str, announcement: dict) -> bool:
    """People in Entra ID who never installed the app, reached by a campaign that installs it for them through the
    emulator's Microsoft Graph. Returns whether it completed with each of them sent to once."""
    joiners = [{"id": f"c0000000-0000-4000-8000-{n:012d}", "displayName": f"New Joiner {n}"} for n in range(1, 6)]
    emulator.graph_users(joiners)
    emulator.register_users([{"aad_object_id": j["id"], "name": j["displayName"], "installed": False} for j in joiners])
    subprocess.run([PYTHON, "manage.py", "sync_entra"], cwd=ROOT, env=env, check=True, capture_output=True)
    emulator.graph_groups([{"id": NEW_JOINERS, "displayName": "New joiners", "members": [j["id"] for j in joiners]}])
    say("five new joiners are in Entra ID and in the group New joiners; none of them has the app")
    audience = api("POST", "/api/v1/audiences/", key, {"name": "New joiners", "kind": "entra_group",
                                                       "source_id": NEW_JOINERS, "source_name": "New joiners"})
    body = launched_to_its_end(key, {
        "name": "Welcome aboard, with the app", "kind": "announcement", "template": announcement["template"],
        "audience": audience["id"], "category": announcement["category"], "install_app": True})
    counts, graph = body["counts"], emulator.graph_stats()
    sent_once = all(len(emulator.messages(user=j["id"])) == 1 for j in joiners)
    say(f"a campaign that installs the app for people who lack it: {body['status']}, sent {counts['sent']}, "
        f"failed {counts['failed']}; Crier installed the app for {counts['installed']} (Graph: {graph['installs']} "
        f"installs, {graph['install_throttled']} answered 429); each reached once: {sent_once}")
    return body["status"] == "completed" and counts["installed"] == len(joiners) and sent_once


def urgent_notice(emulator, key: str, announcement: dict) -> bool:
    """An urgent announcement to the group Leeds office: each person is sent the message, then its pop-up in their
    Teams activity feed (the emulator's Graph), a hundred people a call. The demo's API key approves what it
    launches, as an integration trusted with campaigns:approve does. Returns whether everyone got both, once."""
    leeds = next(a for a in api("GET", "/api/v1/audiences/?page_size=100", key)["results"] if a["name"] == "Leeds office")
    body = launched_to_its_end(key, {
        "name": "Leeds office closed today", "kind": "announcement", "template": announcement["template"],
        "audience": leeds["id"], "category": announcement["category"], "urgent": True,
        "urgent_text": "The Leeds office is closed today: work from home, details in the message."})
    started = time.monotonic()  # the notices follow the messages: the last ones may still be on their way
    while body["counts"]["notified"] + body["counts"]["notice_failed"] < body["counts"]["sent"]:
        if time.monotonic() - started > 60:
            break
        time.sleep(1)
        body = api("GET", f"/api/v1/campaigns/{body['id']}/", key)
    counts, graph = body["counts"], emulator.graph_stats()
    say(f"an urgent announcement to Leeds office: {body['status']}, sent {counts['sent']}; urgent notices sent "
        f"{counts['notified']}, refused {counts['notice_failed']} (Graph: {graph['activity_calls']} calls, "
        f"{graph['activity_delivered']} pop-ups, {graph['activity_throttled']} answered 429)")
    return body["status"] == "completed" and counts["notified"] == counts["sent"] > 0 and (
        graph["activity_delivered"] == counts["sent"])


def policy_acknowledged(emulator, key: str) -> tuple[bool, int]:
    """A policy to the Leeds office that everyone must acknowledge: its card's button, pressed in Teams by two people
    in three, sends Crier an invoke, and each sees the card Crier answers with. It reminds whoever has not
    acknowledged it a minute after it has sent to everyone (``policy_reminded``). Returns whether Crier counted each
    press once, and the others as still to acknowledge, and the policy's id."""
    leeds = next(a for a in api("GET", "/api/v1/audiences/?page_size=100", key)["results"] if a["name"] == "Leeds office")
    template = api("POST", "/api/v1/templates/", key, {
        "name": "Information security policy, December", "kind": "markdown",
        "text": "Hello {{first_name}}, our **information security policy** changed: lock your screen when you leave "
                "your desk, and report lost badges the same day. Please read it and acknowledge it below."})
    reminder = api("POST", "/api/v1/templates/", key, {
        "name": "Information security policy, a reminder", "kind": "markdown",
        "text": "{{first_name}}, a reminder: our **information security policy** changed, and you have not "
                "acknowledged it yet. Lock your screen when you leave your desk; report lost badges the same day."})
    body = launched_to_its_end(key, {
        "name": "Information security policy", "kind": "announcement", "template": template["id"],
        "audience": leeds["id"], "category": "security", "acknowledgement": "policy",
        "remind_who": "not_acknowledged", "remind_after": "PT1M", "remind_template": reminder["id"]})
    sent = api("GET", f"/api/v1/campaigns/{body['id']}/deliveries/?status=sent&page_size=100", key)["results"]
    people = _aad_of(key, {d["recipient"] for d in sent})
    pressing = [people[d["recipient"]] for n, d in enumerate(sent) if n % 3 < 2]
    cards = [emulator.execute(aad)["outcome"] for aad in pressing]
    counts = api("GET", f"/api/v1/campaigns/{body['id']}/", key)["counts"]
    say(f"a policy to Leeds office everyone must acknowledge: sent {counts['sent']}; {len(pressing)} pressed "
        f"Acknowledge in Teams and saw Crier's answer ({cards.count('card')} cards); Crier counts "
        f"{counts['acknowledged']} acknowledged (who, and which version: its Watch page's CSV)")
    return body["status"] == "completed" and counts["acknowledged"] == len(pressing) == cards.count("card") > 0, body["id"]


def policy_reminded(emulator, key: str, policy_id: int) -> bool:
    """The policy's reminder: Crier's scheduler sends it, a minute after the policy has sent to everyone, to those
    who have not acknowledged it, and half of them acknowledge it on the reminder's card. Returns whether the reminder
    reached exactly those, and their presses count for the policy."""
    policy = api("GET", f"/api/v1/campaigns/{policy_id}/", key)
    started = time.monotonic()
    while not (found := api("GET", f"/api/v1/campaigns/?follows={policy_id}", key)["results"]) or found[0]["status"] \
            not in ("completed", "cancelled", "paused", "draft"):
        if time.monotonic() - started > 180:
            say("the policy's reminder did not complete within three minutes")
            return False
        time.sleep(1)
    reminder = api("GET", f"/api/v1/campaigns/{found[0]['id']}/", key)
    sent = api("GET", f"/api/v1/campaigns/{reminder['id']}/deliveries/?status=sent&page_size=100", key)["results"]
    people = _aad_of(key, {d["recipient"] for d in sent})
    pressing = [d for n, d in enumerate(sent) if n % 2 == 0]
    cards = [emulator.execute(people[d["recipient"]], activity_id=d["activity_id"])["outcome"] for d in pressing]
    after = api("GET", f"/api/v1/campaigns/{policy_id}/", key)["counts"]
    still = policy["counts"]["sent"] - policy["counts"]["acknowledged"]
    say(f"a minute after the policy completed, Crier reminded the {reminder['counts']['sent']} people who had not "
        f"acknowledged it (“{reminder['name']}”, a campaign of its own); {len(pressing)} acknowledged on the "
        f"reminder's card; the policy now counts {after['acknowledged']} of {after['sent']} acknowledged")
    return (reminder["status"] == "completed" and reminder["counts"]["sent"] == still > 0
            and cards.count("card") == len(pressing)
            and after["acknowledged"] == policy["counts"]["acknowledged"] + len(pressing))


def poll_answered(emulator, key: str) -> bool:
    """A poll to the Leeds office: most people answer it in their card (one changes their mind), and the results
    follow live. Returns whether Crier counted each person once, by the option they chose last."""
    leeds = next(a for a in api("GET", "/api/v1/audiences/?page_size=100", key)["results"] if a["name"] == "Leeds office")
    template = api("POST", "/api/v1/templates/", key, {
        "name": "Summer party", "kind": "markdown",
        "text": "Hello {{first_name}}, the summer party is on 3 July. Tell us where you would like it."})
    options = ["The Leeds office roof", "A boat on the canal", "The park"]
    body = launched_to_its_end(key, {
        "name": "Summer party: where?", "kind": "announcement", "template": template["id"], "audience": leeds["id"],
        "category": "news", "poll_question": "Where should the summer party be?", "poll_options": options})
    sent = api("GET", f"/api/v1/campaigns/{body['id']}/deliveries/?status=sent&page_size=100", key)["results"]
    people = _aad_of(key, {d["recipient"] for d in sent})
    voters = [people[d["recipient"]] for n, d in enumerate(sent) if n % 4 < 3]
    for n, aad in enumerate(voters):
        emulator.execute(aad, action="Answer", inputs={"crier_poll": str(n % 3)})
    emulator.execute(voters[0], action="Change my answer", inputs={"crier_poll": "1"})  # a change of mind
    counts = api("GET", f"/api/v1/campaigns/{body['id']}/", key)["counts"]
    results = ", ".join(f"{choice['option']} {choice['count']}" for choice in counts["poll"])
    say(f"a poll to Leeds office: sent {counts['sent']}; {len(voters)} answered in their card, one changed their "
        f"mind; Crier counts {counts['answered']} answers: {results}")
    expected = [sum(1 for n in range(1, len(voters)) if n % 3 == k) + (k == 1) for k in range(3)]
    return body["status"] == "completed" and counts["answered"] == len(voters) and [
        choice["count"] for choice in counts["poll"]] == expected


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the link's 302 is read, not followed (the demo has no internet)
        return None


def clicks_counted(emulator, key: str) -> bool:
    """A campaign that counts clicks, to the Leeds office: its card's button leads through Crier, signed for each
    person. Ten people open it (one twice); returns whether Crier counted ten people and led each to the address."""
    leeds = next(a for a in api("GET", "/api/v1/audiences/?page_size=100", key)["results"] if a["name"] == "Leeds office")
    card = {"type": "AdaptiveCard", "version": "1.5",
            "body": [{"type": "TextBlock", "text": "Hello {{first_name}}, the new benefits are out.", "wrap": True}],
            "actions": [{"type": "Action.OpenUrl", "title": "See what changes",
                         "url": "https://intranet.crier.example/benefits/{{external_id}}"}]}
    template = api("POST", "/api/v1/templates/", key, {"name": "Benefits", "kind": "adaptive_card", "text": "",
                                                      "card": card})
    body = launched_to_its_end(key, {"name": "The new benefits", "kind": "announcement", "template": template["id"],
                                     "audience": leeds["id"], "category": "news", "track_clicks": True})
    sent = api("GET", f"/api/v1/campaigns/{body['id']}/deliveries/?status=sent&page_size=100", key)["results"]
    people = _aad_of(key, {d["recipient"] for d in sent})
    browser = urllib.request.build_opener(_NoRedirect)
    led = []
    for n, delivery in enumerate(sent[:10]):
        [message] = [m for m in emulator.messages(user=people[delivery["recipient"]])
                     if m["activity_id"] == delivery["activity_id"]]
        link = message["activity"]["attachments"][0]["content"]["actions"][0]["url"]
        for _ in range(2 if n == 0 else 1):
            try:
                browser.open(link, timeout=10)
            except urllib.error.HTTPError as answer:  # the 302, not followed
                led.append(answer.headers["Location"] == f"https://intranet.crier.example/benefits/{delivery['recipient']}")
    counts = api("GET", f"/api/v1/campaigns/{body['id']}/", key)["counts"]
    say(f"a campaign that counts clicks, to Leeds office: sent {counts['sent']}; 10 people opened its button (one "
        f"twice), each through a link signed for them; Crier counts {counts['clicked']} people")
    return body["status"] == "completed" and counts["clicked"] == 10 and len(led) == 11 and all(led)


def _aad_of(key: str, wanted: set[str]) -> dict[str, str]:
    """The Entra object ids of the people with these external ids, from the API."""
    people: dict[str, str] = {}
    page = api("GET", "/api/v1/recipients/?page_size=1000", key)
    while True:
        people.update({p["external_id"]: p["aad_object_id"] for p in page["results"] if p["external_id"] in wanted})
        if not page.get("next") or len(people) == len(wanted):
            return people
        following = urllib.parse.urlsplit(page["next"])
        page = api("GET", f"{following.path}?{following.query}", key)


STAFF = [{"id": "a0000000-0000-4000-8000-0000000057a1", "displayName": "Morgan Comms",
          "userPrincipalName": "morgan@crier.example", "mail": "morgan@crier.example", "appRoles": ["Crier.Author"]},
         {"id": "a0000000-0000-4000-8000-0000000057a2", "displayName": "Riley Approves",
          "userPrincipalName": "riley@crier.example", "mail": "riley@crier.example", "appRoles": ["Crier.Approver"]}]


def staff_sign_in(emulator) -> bool:
    """A comms author signs in to the admin as at work: the login page's "Sign in with Microsoft", the emulator's
    Entra ID sign-in page, and back. Returns whether the admin then greets them."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect)
    base = f"http://127.0.0.1:{WEB_PORT}"
    entra_page = _redirected_to(browser, f"{base}/admin/sign-in/entra/?next=/admin/")
    answer = emulator.sign_in_as(entra_page, STAFF[0]["userPrincipalName"])
    landed = _redirected_to(browser, f"{base}/admin/sign-in/entra/callback/?{urllib.parse.urlencode(answer)}")
    greeted = "Welcome" in browser.open(f"{base}{landed}").read().decode()
    say(f"{STAFF[0]['displayName']} signed in to the admin with Entra ID (the emulator's sign-in page), as an "
        f"author by the app role Entra ID gives: {greeted}")
    return greeted


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # each redirect is read, not followed


def _redirected_to(browser, url: str) -> str:
    try:
        browser.open(url)
    except urllib.error.HTTPError as answer:
        if answer.code in (301, 302, 303) and answer.headers.get("Location"):
            return answer.headers["Location"]
        raise
    raise RuntimeError(f"{url} answered without a redirect")


def main() -> int:
    from emulator.process import start_emulator

    for port in (WEB_PORT, EMULATOR_PORT):
        if not port_free(port):
            raise SystemExit(f"[demo] port {port} on 127.0.0.1 is in use; stop what uses it or set DEMO_WEB_PORT / DEMO_EMULATOR_PORT")
    (VAR / "log").mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TEAMS_", "EMULATOR_"))}
    app = {"BOT_APP_ID": "00000000-0000-0000-0000-00000000b07a", "BOT_APP_PASSWORD": "emulator-secret",
           "BOT_TENANT_ID": "11111111-1111-1111-1111-111111111111"}
    running = start_emulator(VAR / "emulator", port=EMULATOR_PORT, env={**base_env, **app}, limits=True,
                             bot_endpoint=f"http://127.0.0.1:{WEB_PORT}/api/messages")
    stoppers.append(running.stop)
    say(f"started the Teams emulator (pid {running.pid}, log var/emulator/emulator.log)")
    info, emulator = running.info, running.client

    env = {**base_env, **app, "CRIER_ENV": "development", "DJANGO_SETTINGS_MODULE": "settings.settings",
           "BOT_AUTHORITY": info["authority"], "TEAMS_SERVICE_URL": info["service_url"],
           "BOT_OPENID_METADATA_URL": info["openid_metadata_url"], "REQUESTS_CA_BUNDLE": info["ca_file"],
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
           # Small enough that an announcement to the whole demo organisation needs an approver.
           "APPROVAL_THRESHOLD": os.environ.get("APPROVAL_THRESHOLD", "100"),
           # The link in the Teams message that asks an approver to approve a campaign.
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{WEB_PORT}",
           # People from Entra ID, through the emulator's Microsoft Graph, which owns what it says of them.
           "ENTRA_SYNC": "true", "GRAPH_BASE_URL": info["graph_url"],
           "ENTRA_SYNC_FIELDS": "display_name=displayName,first_name=givenName,last_name=surname,email=mail,"
                                "upn=userPrincipalName,department=department,job_title=jobTitle,location=officeLocation,"
                                "country=usageLocation,locale=preferredLanguage,start_date=employeeHireDate",
           "GRAPH_TOKEN_SCOPE": "https://graph.microsoft.com/.default",
           # Staff sign in with their work accounts, at the emulator's Entra ID (docs/going-live.md, section 10).
           "STAFF_SIGN_IN": "true"}
    say("migrating the database")
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    start("web", [PYTHON, "-m", "gunicorn", "settings.wsgi", "-b", f"127.0.0.1:{WEB_PORT}", "-w", "2", "--access-logfile", "-"], env)
    start("worker", [PYTHON, "-m", "celery", "-A", "settings", "worker", "-Q", "direct,deliveries,control,default",
                     "--pool", "threads", "-c", "8", "-n", "demo@%h", "--loglevel", "INFO"], env)
    start("beat", [PYTHON, "-m", "celery", "-A", "settings", "beat", "--loglevel", "INFO",
                   "--schedule", str(VAR / "celerybeat-schedule")], env)
    wait_for("the web server", lambda: urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}/healthz", timeout=2).status == 200)

    # What an administrator uploads to the Teams admin center (docs/going-live.md). Teams wants https
    # addresses for the publisher's pages, which the demo has none of: it names a placeholder.
    package = VAR / "crier-teams-app.zip"
    subprocess.run([PYTHON, "manage.py", "teams_app_package", "--out", str(package)], cwd=ROOT, check=True,
                   env={**env, "TEAMS_APP_WEBSITE_URL": "https://crier.example.com",
                        "PUBLIC_BASE_URL": "https://crier.example.com"}, capture_output=True)
    say(f"wrote the Teams app package an administrator would upload: {package.relative_to(ROOT)}")

    # The organisation starts in Entra ID: its people, one new hire HR knows nothing of, and two comms staff. Crier
    # learns of them by syncing, not by seeding; the demo seeds only what comms staff would make themselves.
    directory = json.loads(subprocess.run([PYTHON, "manage.py", "seed_demo", "--people", str(PEOPLE), "--directory"],
                                          cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout)
    hire = {"id": "e0000000-0000-4000-8000-00000000d1e0", "displayName": "Dana Directory", "employeeId": "ENTRA-1"}
    emulator.reset()
    emulator.graph_users(directory["users"] + [hire] + STAFF)
    emulator.graph_config(sign_in_redirect_uris=[f"http://127.0.0.1:{WEB_PORT}/admin/sign-in/entra/callback/"])
    say(f"an organisation of {PEOPLE} people in Entra ID (the emulator's Microsoft Graph), one new hire and two "
        "comms staff")
    synced = subprocess.run([PYTHON, "manage.py", "sync_entra"], cwd=ROOT, env=env, check=True, capture_output=True,
                            text=True).stdout.strip()
    say(f"people from Entra ID: {synced}")
    say("seeding what comms staff make: categories, templates, audiences, a welcome campaign, an announcement")
    seeded = json.loads(subprocess.run([PYTHON, "manage.py", "seed_demo", "--people", str(PEOPLE), "--synced"],
                                       cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout)
    people = seeded["people"]
    emulator.register_users([{"aad_object_id": p["aad_object_id"], "name": p["name"]} for p in people]
                            + [{"aad_object_id": hire["id"], "name": hire["displayName"]}])
    blocker = people[3]
    emulator.block(blocker["aad_object_id"])
    say(f"{blocker['name']} has blocked the bot in Teams")
    for person in (p for p in people if p["new_starter"]):
        emulator.install(person["aad_object_id"])
        say(f"new starter {person['name']} installed the bot -> welcome message queued")
    emulator.say(people[7]["aad_object_id"], text="stop")
    say(f"{people[7]['name']} typed 'stop' -> opted out")

    key = seeded["api_key"]
    campaign_id = seeded["announcement_id"]
    say(f"launching announcement {campaign_id} to everyone through POST /api/v1/campaigns/{campaign_id}/launch/")
    api("POST", f"/api/v1/campaigns/{campaign_id}/launch/", key, {})
    started = time.monotonic()
    while True:
        campaign = api("GET", f"/api/v1/campaigns/{campaign_id}/", key)
        counts = campaign["counts"]
        done = counts["sent"] + counts["failed"] + counts["skipped"]
        say(f"{campaign['status']:>9}: {done}/{counts['total']} done  (sent {counts['sent']}, failed {counts['failed']}, "
            f"skipped {counts['skipped']}, remaining {counts['remaining']}, {counts['rate_per_second']}/s)")
        if campaign["status"] in ("completed", "cancelled") or time.monotonic() - started > 600:
            break
        time.sleep(2)
    elapsed = time.monotonic() - started
    stats = emulator.stats()
    say(f"done in {elapsed:.1f} s; the emulator accepted {stats['messages']} messages, "
        f"{stats['duplicates']} duplicates, {sum(stats['throttled'].values())} answered 429")
    # Three people in five open the chat and read it (spread across departments): Teams sends the bot a read receipt
    # for each.
    readers = [p for n, p in enumerate(people) if (n * 31) % 23 < 14 and n not in (3, 7)]
    for person in readers:
        emulator.read(person["aad_object_id"])
    counts = api("GET", f"/api/v1/campaigns/{campaign_id}/", key)["counts"]
    say(f"{len(readers)} people read it in Teams; Crier counts {counts['read']} read of {counts['sent']} sent "
        "(where Teams reports reads: people and organisations can turn read receipts off)")
    for n, person in enumerate(readers[:30]):  # and some of them react
        emulator.react(person["aad_object_id"], ("like", "heart", "laugh")[n % 3])
    reactions = api("GET", f"/api/v1/campaigns/{campaign_id}/", key)["counts"]["reactions"]
    say(f"30 of them reacted: {', '.join(f'{kind} {count}' for kind, count in reactions.items())}")
    read_counted = counts["read"] == len(readers) and sum(reactions.values()) == 30
    funnel = api("GET", f"/api/v1/campaigns/{campaign_id}/funnel/?by=department", key)["groups"]
    say("read, by department: " + "; ".join(f"{g['value']} {g['read']} of {g['sent']}" for g in funnel[:4])
        + " (the Watch page shows it by department, location, country…)")
    targeted = group_and_team(emulator, env, key, campaign, people)
    installed = install_for_new_joiners(emulator, env, key, campaign)
    urgent = urgent_notice(emulator, key, campaign)
    acknowledged, policy_id = policy_acknowledged(emulator, key)
    polled = poll_answered(emulator, key)
    clicked = clicks_counted(emulator, key)
    signed_in = staff_sign_in(emulator)
    reminded = policy_reminded(emulator, key, policy_id)
    print(f"""
  Admin            http://127.0.0.1:{WEB_PORT}/admin/        (users admin, author and approver; each one's
                   password is its name: demo only; or "Sign in with Microsoft" as morgan@crier.example,
                   an author, or riley@crier.example, an approver, at the emulator's page, which asks no password)
  API docs         http://127.0.0.1:{WEB_PORT}/api/docs/     (API key: {key})
  Emulator inbox   {info['url']}/   (self-signed; CA at {info['ca_file']})
  Teams app        {package.relative_to(ROOT)} (also in the admin: Teams addresses, as a superuser)
""", flush=True)
    if os.environ.get("DEMO_EXIT") == "1":
        return 0 if campaign["status"] == "completed" and targeted and installed and urgent and acknowledged and polled and clicked and signed_in and read_counted and reminded else 1
    say("running; press Ctrl-C to stop everything")
    while all(p.poll() is None for p in children):
        time.sleep(1)
    say("a process stopped; see var/log/")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
