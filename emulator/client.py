"""A small client for the emulator's control API (stdlib + urllib3, no Django), for tests and the demo."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import urllib3

UserRef = str | uuid.UUID


class EmulatorError(Exception):
    """The control API answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} answered {status}: {body}")
        self.status = status
        self.body = body


class _Page(HTMLParser):
    """What a browser needs from a sign-in page: its first form (where it posts, its fields) and the error
    it shows, if any."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.error = ""
        self._in_form = self._in_error = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action, self._in_form = attributes.get("action", ""), True
        elif tag == "input" and self._in_form and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value", "")
        elif "error" in attributes.get("class", "").split():
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "p":
            self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data


def _redirect_values(location: str) -> dict[str, str]:
    """The parameters Entra put on the redirect URI: in its fragment, else in its query."""
    parts = urlsplit(location)
    return dict(parse_qsl(parts.fragment or parts.query, keep_blank_values=True))


class EmulatorClient:
    def __init__(self, base_url: str, ca_file: str | None, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_file = str(ca_file) if ca_file else None
        self._pool = urllib3.PoolManager(
            maxsize=8,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.ca_file,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
            retries=False,
        )

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """One call; the decoded JSON answer. Raises EmulatorError on a status of 400 or more. ``timeout``: seconds
        to wait for the answer, instead of the client's own."""
        url = self.base_url + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": urllib3.Timeout(connect=5.0, read=timeout)}
        response = self._pool.request(method, url, body=data, headers=headers, **extra)
        try:
            decoded: Any = json.loads(response.data) if response.data else None
        except ValueError:
            decoded = response.data.decode("utf-8", "replace")
        if response.status >= 400:
            raise EmulatorError(method, path, response.status, decoded)
        return decoded

    @staticmethod
    def _user_path(aad: UserRef, action: str | None = None) -> str:
        path = f"/_emulator/users/{quote(str(aad), safe='')}"
        return f"{path}/{action}" if action else path

    # Service -----------------------------------------------------------------------------------

    def health(self) -> bool:
        return bool(self.request("GET", "/_emulator/health").get("ok"))

    def reset(self) -> None:
        """Forgets users, conversations, messages and counters (keys, certificate and config stay)."""
        self.request("POST", "/_emulator/reset")

    def config(self, **fields: Any) -> dict[str, Any]:
        """Without arguments, reads the config; otherwise changes the given fields (``faults``
        replaces the whole fault set) and returns the new config."""
        if not fields:
            return self.request("GET", "/_emulator/config")
        return self.request("POST", "/_emulator/config", fields)

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/_emulator/stats")

    # Users -------------------------------------------------------------------------------------

    def register_users(self, users: list[dict[str, Any] | UserRef]) -> list[dict[str, Any]]:
        """Registers (or updates) users: dicts with ``aad_object_id`` and optional ``name``,
        ``tenant_id``, ``installed``, ``blocked``; a bare id stands for ``{"aad_object_id": id}``."""
        entries = [u if isinstance(u, dict) else {"aad_object_id": str(u)} for u in users]
        entries = [{**e, "aad_object_id": str(e.get("aad_object_id"))} for e in entries]
        return self.request("POST", "/_emulator/users", {"users": entries})["users"]

    def users(self) -> list[dict[str, Any]]:
        return self.request("GET", "/_emulator/users")["users"]

    def user(self, aad: UserRef) -> dict[str, Any]:
        """One user, with its ``messages``."""
        return self.request("GET", self._user_path(aad))

    def install(self, aad: UserRef) -> dict[str, Any]:
        """The user installs the bot: conversationUpdate + installationUpdate reach the bot."""
        return self.request("POST", self._user_path(aad, "install"))

    def uninstall(self, aad: UserRef) -> dict[str, Any]:
        return self.request("POST", self._user_path(aad, "uninstall"))

    def block(self, aad: UserRef) -> dict[str, Any]:
        return self.request("POST", self._user_path(aad, "block"))

    def unblock(self, aad: UserRef) -> dict[str, Any]:
        return self.request("POST", self._user_path(aad, "unblock"))

    def delete_chat(self, aad: UserRef) -> dict[str, Any]:
        return self.request("POST", self._user_path(aad, "delete-chat"))

    def read(self, aad: UserRef, activity_id: str | None = None) -> dict[str, Any]:
        """The user reads the bot's messages up to ``activity_id`` (the latest by default): Teams' read receipt
        goes to the bot. Returns the bot's status and the id read up to."""
        return self.request("POST", self._user_path(aad, "read"), {} if activity_id is None else
                            {"activity_id": activity_id})

    def react(self, aad: UserRef, kind: str = "like", activity_id: str | None = None, *,
              removed: bool = False) -> dict[str, Any]:
        """The user reacts to one of the bot's messages (the latest by default), or takes the reaction back."""
        body: dict[str, Any] = {"type": kind, "removed": removed}
        if activity_id is not None:
            body["activity_id"] = activity_id
        return self.request("POST", self._user_path(aad, "react"), body)

    def execute(self, aad: UserRef, action: str | None = None, activity_id: str | None = None,
                inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        """The user presses an ``Action.Execute`` button of the card of one of the bot's messages (the latest by
        default): ``action`` is its id or title (the card's first by default), ``inputs`` the values the person
        gave the card's inputs. Teams' invoke ``adaptiveCard/action`` reaches the bot; a card it answers takes the
        place of the message's card for the person. Returns ``bot_status``, ``answer`` (the bot's body),
        ``outcome`` ("card", "message", "error" or "unreachable"), ``card`` (the card the person sees now),
        ``activity_id`` and ``invoke`` (what was sent)."""
        body: dict[str, Any] = {}
        if action is not None:
            body["action"] = action
        if activity_id is not None:
            body["activity_id"] = activity_id
        if inputs is not None:
            body["inputs"] = inputs
        return self.request("POST", self._user_path(aad, "execute"), body)

    def refresh(self, aad: UserRef, activity_id: str | None = None) -> dict[str, Any]:
        """Teams shows the card of one of the bot's messages (the latest by default): its ``refresh.action`` goes
        to the bot as an invoke with the trigger ``automatic``. Answers as ``execute`` does."""
        return self.request("POST", self._user_path(aad, "refresh"), {} if activity_id is None else
                            {"activity_id": activity_id})

    def engage(self, users: Iterable[UserRef] | str = "all", *, read: bool = False, execute: str | None = None,
               react: str | None = None, concurrency: int = 50, timeout: float | None = None) -> dict[str, Any]:
        """Many people act on their latest message from the bot, ``concurrency`` at a time (at most 500): each
        reads it (``read``), presses its card's ``Action.Execute`` ``execute`` (id or title; skipped for a card
        without it) and reacts (``react``: "like"...), in that order. ``users`` is "all" or Entra object ids
        (at most 200,000). Returns ``users``, ``sent`` (per kind), ``bot_status`` (per HTTP status), ``errors``,
        ``seconds``, ``invoke_ms`` (``p50``, ``p99``, ``max``) and ``invokes`` (per outcome). ``timeout``: how long
        to wait for it, in seconds."""
        body = {"users": users if isinstance(users, str) else [str(user) for user in users], "read": read,
                "execute": execute, "react": react, "concurrency": concurrency}
        return self.request("POST", "/_emulator/engage", body, timeout=timeout)

    def say(self, aad: UserRef, text: str | None = None, value: Any = None) -> dict[str, Any]:
        """The user types ``text`` (or submits a card: ``value``); returns the bot's status and body."""
        body: dict[str, Any] = {}
        if text is not None:
            body["text"] = text
        if value is not None:
            body["value"] = value
        return self.request("POST", self._user_path(aad, "say"), body)

    # Messages ----------------------------------------------------------------------------------

    def messages(
        self, user: UserRef | None = None, since: str | float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Messages the bot sent (oldest first), optionally for one user and from a time on."""
        query = {"user": str(user) if user is not None else None, "since": since, "limit": limit}
        return self.request("GET", "/_emulator/messages", query=query)["messages"]

    def wait_for_messages(
        self, count: int, user: UserRef | None = None, timeout: float = 10.0, interval: float = 0.1
    ) -> list[dict[str, Any]]:
        """Polls until at least ``count`` messages were recorded (for one user, or in all); raises
        TimeoutError with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(user=user)
            if len(found) >= count or time.monotonic() >= deadline:
                break
            time.sleep(interval)
        if len(found) < count:
            raise TimeoutError(f"expected {count} messages, got {len(found)} within {timeout} s")
        return found

    # Microsoft Graph's directory ----------------------------------------------------------------

    def graph_users(self, users: list[dict[str, Any]]) -> dict[str, Any]:
        """Creates or changes directory users: ``{"id": GUID, "displayName": ..., ...}`` each."""
        return self.request("POST", "/_emulator/graph/users", {"users": users})

    def graph_delete(self, user_id: UserRef) -> dict[str, Any]:
        return self.request("POST", f"/_emulator/graph/users/{quote(str(user_id))}/delete")

    def graph_expire_delta_links(self) -> dict[str, Any]:
        return self.request("POST", "/_emulator/graph/expire-delta-links")

    def graph_config(self, **fields: Any) -> dict[str, Any]:
        """``page_size``, ``permissions``, ``throttle_next``, ``retry_after_seconds``, and for people's sign-in
        ``sign_in_redirect_uris`` (the app's redirect URIs), ``group_claims`` and ``sign_in_code_seconds``."""
        return self.request("POST", "/_emulator/graph/config", fields)

    def sign_in_as(self, auth_uri: str, account: str) -> dict[str, str]:
        """Goes through Entra's sign-in as a browser would: opens ``auth_uri`` (the ``auth_uri`` of msal's
        ``initiate_auth_code_flow``), signs in as ``account`` (a person's UPN, mail or object id) and returns
        what reached the redirect URI, by 302 or form_post: ``code``, ``state``... or ``error`` and
        ``error_description``, the ``auth_response`` msal's ``acquire_token_by_auth_code_flow`` takes. Raises
        EmulatorError when the emulator shows an error page or refuses the account (its AADSTS message)."""
        response = self._pool.request("GET", auth_uri, redirect=False)
        if response.status in (302, 303):
            return _redirect_values(response.headers["Location"])
        page = _Page(response.data.decode("utf-8", "replace"))
        if response.status != 200 or page.action is None or "login" not in page.fields:
            raise EmulatorError("GET", urlsplit(auth_uri).path, response.status, page.error or response.data[:500])
        url = urljoin(auth_uri, page.action)
        response = self._pool.request("POST", url, fields={**page.fields, "login": account}, encode_multipart=False,
                                      redirect=False)
        if response.status in (302, 303):
            return _redirect_values(response.headers["Location"])
        answer = _Page(response.data.decode("utf-8", "replace"))
        if response.status != 200 or answer.action is None or "login" in answer.fields:
            raise EmulatorError("POST", urlsplit(url).path, response.status, answer.error or response.data[:500])
        return answer.fields  # a form_post page: what it posts to the redirect URI

    def graph_activity(self, user: UserRef) -> list[dict[str, Any]]:
        """The activity-feed notifications that reached the person, oldest first."""
        return self.request("GET", "/_emulator/graph/activity", query={"user": str(user)})["notifications"]

    def graph_stats(self) -> dict[str, Any]:
        return self.request("GET", "/_emulator/graph/stats")

    def graph_groups(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """Creates or replaces groups: ``{"id": GUID, "displayName": ..., "description"?, "members"?: [user or
        group ids], "membershipRule"?}`` each."""
        return self.request("POST", "/_emulator/graph/groups", {"groups": groups})

    def graph_group_members(
        self, group_id: UserRef, add: Iterable[UserRef] = (), remove: Iterable[UserRef] = ()
    ) -> dict[str, Any]:
        body = {"add": [str(member) for member in add], "remove": [str(member) for member in remove]}
        return self.request("POST", f"/_emulator/graph/groups/{quote(str(group_id), safe='')}/members", body)

    def graph_delete_group(self, group_id: UserRef) -> dict[str, Any]:
        return self.request("POST", f"/_emulator/graph/groups/{quote(str(group_id), safe='')}/delete")

    def graph_catalog(self, apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replaces the org app catalog: ``{"id"?: GUID, "externalId": the manifest id, "displayName"}`` each."""
        return self.request("POST", "/_emulator/graph/catalog", {"apps": apps})["apps"]

    def graph_catalog_list(self) -> list[dict[str, Any]]:
        return self.request("GET", "/_emulator/graph/catalog")["apps"]

    def graph_install_policy(self, blocked: bool, users: Iterable[UserRef] | None = None) -> dict[str, Any]:
        """Blocks (or unblocks) installing the app: for the whole tenant, or with ``users`` for those only."""
        body: dict[str, Any] = {"blocked": blocked}
        if users is not None:
            body["users"] = [str(user) for user in users]
        return self.request("POST", "/_emulator/graph/install-policy", body)

    # Teams' teams -------------------------------------------------------------------------------

    @staticmethod
    def _team_path(team_id: str, action: str) -> str:
        return f"/_emulator/teams/{quote(team_id, safe='')}/{action}"

    def teams_create(
        self, name: str, members: Iterable[UserRef], id: str | None = None, aad_group_id: UserRef | None = None
    ) -> dict[str, Any]:
        """A team (or, with a known ``id``, that team replaced); its members who are new to Teams have not
        installed the bot themselves."""
        body: dict[str, Any] = {"name": name, "members": [str(member) for member in members]}
        if id is not None:
            body["id"] = id
        if aad_group_id is not None:
            body["aad_group_id"] = str(aad_group_id)
        return self.request("POST", "/_emulator/teams", body)

    def teams_list(self) -> list[dict[str, Any]]:
        return self.request("GET", "/_emulator/teams")["teams"]

    def team_members(
        self, team_id: str, add: Iterable[UserRef] = (), remove: Iterable[UserRef] = ()
    ) -> dict[str, Any]:
        body = {"add": [str(member) for member in add], "remove": [str(member) for member in remove]}
        return self.request("POST", self._team_path(team_id, "members"), body)

    def team_install(self, team_id: str) -> dict[str, Any]:
        """Someone adds the bot to the team: its conversationUpdate reaches the bot."""
        return self.request("POST", self._team_path(team_id, "install"))

    def team_uninstall(self, team_id: str) -> dict[str, Any]:
        return self.request("POST", self._team_path(team_id, "uninstall"))

    def team_rename(self, team_id: str, name: str) -> dict[str, Any]:
        return self.request("POST", self._team_path(team_id, "rename"), {"name": name})

    def close(self) -> None:
        self._pool.clear()
