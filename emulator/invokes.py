"""Universal Actions: a person presses an ``Action.Execute`` button of the bot's card (or Teams shows a card
with a ``refresh``), Teams sends the bot the invoke ``adaptiveCard/action`` and shows what the bot answers in
the HTTP response: a card in place of the message's card, for that person; a text, briefly; or "Something went
wrong" for an error. The control API, the inbox page and the bulk engagement all go through ``Invoker``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .bot_client import invoke_activity, reaction_activity, read_receipt_activity
from .cards import ADAPTIVE_CARD, CardActions, read_card
from .config import ConfigError
from .context import Context
from .state import User, latency_summary

INVOKE_MESSAGE = "application/vnd.microsoft.activity.message"
INVOKE_ERROR = "application/vnd.microsoft.error"
MAX_ENGAGED_USERS = 200_000
DEFAULT_CONCURRENCY = 50
MAX_CONCURRENCY = 500


def outcome_of(status: int | str, answer: Any) -> str:
    """How Teams takes the bot's answer to an invoke: ``card``, ``message``, ``error`` (anything but HTTP 200
    with a ``statusCode`` 200 card or text) or ``unreachable`` (no answer in time)."""
    if isinstance(status, str):
        return "unreachable"
    if status != 200 or not isinstance(answer, dict) or answer.get("statusCode") != 200:
        return "error"
    if answer.get("type") == ADAPTIVE_CARD and isinstance(answer.get("value"), dict):
        return "card"
    if answer.get("type") == INVOKE_MESSAGE and isinstance(answer.get("value"), str):
        return "message"
    return "error"


def what_teams_shows(result: InvokeResult) -> str | None:
    """The line Teams shows the person for an answer that is not a card (None for a card)."""
    if result.outcome == "message":
        return f"The bot answered: {result.answer['value']}"
    if result.outcome == "unreachable":
        return f"Something went wrong: the bot did not answer ({result.status})."
    if result.outcome == "error":
        detail = f"the bot answered HTTP {result.status}"
        answer = result.answer
        if isinstance(answer, dict) and isinstance(answer.get("value"), dict):
            error = answer["value"]
            detail += f", {answer.get('statusCode')} {error.get('code', '')}: {error.get('message', '')}"
        return f"Something went wrong ({detail})."
    return None


@dataclass
class InvokeResult:
    status: int | str  # the bot's HTTP status, or why it could not be reached
    answer: Any  # the bot's body, parsed
    outcome: str
    card: dict[str, Any] | None  # the card the person sees now (None when the body is not kept)
    activity: dict[str, Any]  # the invoke sent
    milliseconds: float


class Invoker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # Which message, which button ------------------------------------------------------------------

    def target(self, user: User, activity_id: Any) -> int:
        """The row of one of the bot's messages to ``user`` that the person can act on (the latest by default);
        ConfigError otherwise."""
        log = self.ctx.store.log
        if activity_id is None:
            if not user.messages:
                raise ConfigError("the bot has sent this user nothing")
            seq = user.messages[-1]
        else:
            if not isinstance(activity_id, str) or not activity_id.isdigit():
                raise ConfigError("activity_id must be the id of one of the bot's messages (digits)")
            seq = log.seq_of(activity_id)
            if seq is None or log.user_index[seq] != user.index:
                raise ConfigError(f"activity {activity_id} is not one of the bot's messages to this person")
        if seq in log.deleted:
            raise ConfigError(f"the bot deleted message {log.activity_id(seq)}: there is no card to act on")
        if log.conversation_index[seq] != user.conversation_index:
            raise ConfigError(f"message {log.activity_id(seq)} is in a chat the person deleted")
        return seq

    def card_actions(self, seq: int) -> CardActions:
        store = self.ctx.store
        log = store.log
        card = log.actionable_card(seq)
        if card is not None:
            return read_card(card)
        if seq in log.activities:
            raise ConfigError(f"message {log.activity_id(seq)} has no Adaptive Card")
        if store.is_latest(seq):
            raise ConfigError(f"the card the person sees on message {log.activity_id(seq)} has no Action.Execute and "
                              "no refresh (its body was not kept: keep_bodies is off)")
        raise ConfigError(f"message {log.activity_id(seq)}'s body was not kept (keep_bodies is off): the emulator then "
                          "keeps the buttons of each person's latest card only")

    @staticmethod
    def inputs_for(actions: CardActions, action: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
        """The inputs the renderer sends with ``action``: the card's inputs as they are, with the person's
        values; none for an action with ``associatedInputs: "none"``."""
        if action.get("associatedInputs") == "none":
            if given:
                raise ConfigError('this Action.Execute sends no inputs ("associatedInputs": "none")')
            return {}
        known = actions.input_ids()
        for key, value in (given or {}).items():
            if key not in known:
                raise ConfigError(f"the card has no input {key!r} (its inputs: {', '.join(known) or 'none'})")
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"inputs.{key} must be a string, a number or true/false")
        return {**actions.defaults(), **(given or {})}

    # Sending ---------------------------------------------------------------------------------------

    async def execute(self, user: User, seq: int, selector: str | None,
                      given: dict[str, Any] | None) -> InvokeResult:
        """The person presses the card's ``Action.Execute`` ``selector`` (the first by default)."""
        actions = self.card_actions(seq)
        found = actions.find(selector)
        if found is None:
            names = ", ".join(repr(name) for name in actions.names())
            if not names:
                raise ConfigError(f"the card of message {self.ctx.store.log.activity_id(seq)} has no Action.Execute")
            raise ConfigError(f"the card has no Action.Execute {selector!r} (its actions: {names})")
        _, action = found
        return await self.invoke(user, seq, action, "manual", self.inputs_for(actions, action, given))

    async def refresh(self, user: User, seq: int) -> InvokeResult:
        """Teams shows the card: with a ``refresh``, it sends its action (in a personal chat, whatever its
        ``userIds``)."""
        actions = self.card_actions(seq)
        if actions.refresh is None:
            raise ConfigError("the card has no refresh (an Action.Execute in refresh.action)")
        return await self.invoke(user, seq, actions.refresh, "automatic", None)

    async def invoke(self, user: User, seq: int, action: dict[str, Any], trigger: str,
                     inputs: dict[str, Any] | None) -> InvokeResult:
        """Sends the invoke, times the bot's answer, counts it and applies a card answer."""
        ctx = self.ctx
        store = ctx.store
        log = store.log
        activity = invoke_activity(user, store.conversation_for(user), ctx.service_url, ctx.settings.app_id,
                                   log.activity_id(seq), action, trigger=trigger, inputs=inputs)
        started = time.perf_counter()
        status, answer = await ctx.bot.post(ctx.config.bot_endpoint, activity)
        milliseconds = (time.perf_counter() - started) * 1000
        outcome = outcome_of(status, answer)
        if ctx.store is not store or store.log is not log:  # reset while the bot was answering
            return InvokeResult(status, answer, outcome, None, activity, milliseconds)
        store.count_invoke(outcome, None if outcome == "unreachable" else milliseconds)
        if outcome == "card":
            store.answer_card(seq, answer["value"])
        card = store.message(seq).card
        return InvokeResult(status, answer, outcome, card, activity, milliseconds)

    # Many people at once ---------------------------------------------------------------------------

    def engaged_users(self, users: Any) -> list[User]:
        """The people ``users`` names ("all", or Entra object ids) who have a message from the bot."""
        store = self.ctx.store
        if users == "all":
            chosen = [user for user in store.user_list if user.messages]
        elif isinstance(users, list):
            if len(users) > MAX_ENGAGED_USERS:
                raise ConfigError(f"users: at most {MAX_ENGAGED_USERS} people at a time")
            chosen = []
            for index, aad in enumerate(dict.fromkeys(users)):
                user = store.find_user(aad) if isinstance(aad, str) else None
                if user is None:
                    raise ConfigError(f"users[{index}]: {aad!r} is not a known user")
                if user.messages:
                    chosen.append(user)
        else:
            raise ConfigError('users must be "all" or a list of Entra object ids')
        if len(chosen) > MAX_ENGAGED_USERS:
            raise ConfigError(f"users: at most {MAX_ENGAGED_USERS} people at a time")
        return chosen

    async def engage(self, users: list[User], *, read: bool, execute: str | None, react: str | None,
                     concurrency: int) -> dict[str, Any]:
        """For each person, on their latest message: the read receipt, the invoke of ``execute`` (when the card
        has it) and the reaction, in that order; ``concurrency`` people at a time."""
        ctx = self.ctx
        store = ctx.store
        concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
        sent = {"read": 0, "execute": 0, "react": 0}
        statuses: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        latencies: list[float] = []
        counts = {"errors": 0, "execute_missing": 0}
        queue = iter(users)

        async def post(activity: dict[str, Any]) -> None:
            status, _ = await ctx.bot.post(ctx.config.bot_endpoint, activity)
            statuses["unreachable" if isinstance(status, str) else str(status)] += 1
            if isinstance(status, str) or status >= 400:
                counts["errors"] += 1

        async def one(user: User) -> None:
            if ctx.store is not store or not user.messages:
                return
            seq = user.messages[-1]
            activity_id = store.log.activity_id(seq)
            app_id, service_url = ctx.settings.app_id, ctx.service_url
            if read:
                sent["read"] += 1
                store.read_receipts += 1
                await post(read_receipt_activity(user, store.conversation_for(user), service_url, app_id,
                                                 activity_id))
            if execute is not None:
                try:
                    self.target(user, activity_id)
                    actions = self.card_actions(seq)
                    found = actions.find(execute)
                    inputs = self.inputs_for(actions, found[1], None) if found else None
                except ConfigError:
                    found = None
                if found is None:
                    counts["execute_missing"] += 1
                else:
                    sent["execute"] += 1
                    result = await self.invoke(user, seq, found[1], "manual", inputs)
                    statuses["unreachable" if result.outcome == "unreachable" else str(result.status)] += 1
                    outcomes[result.outcome] += 1
                    if result.outcome != "unreachable":
                        latencies.append(result.milliseconds)
                    if result.outcome in ("error", "unreachable"):
                        counts["errors"] += 1
            if react is not None:
                sent["react"] += 1
                await post(reaction_activity(user, store.conversation_for(user), service_url, app_id, activity_id,
                                             react, removed=False))

        async def worker() -> None:
            for user in queue:  # one shared iterator: each person is taken by one worker
                await one(user)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(users))))))
        return {
            "users": len(users),
            "sent": sent,
            "bot_status": dict(statuses),
            "errors": counts["errors"],
            "seconds": round(time.perf_counter() - started, 3),
            "invoke_ms": latency_summary(latencies),
            "invokes": {outcome: outcomes.get(outcome, 0) for outcome in ("card", "message", "error", "unreachable")},
            "execute_missing": counts["execute_missing"],
            "concurrency": concurrency,
        }
