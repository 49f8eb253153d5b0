"""Everything the request handlers share: settings, keys, state, limiters and the client for the bot."""

from __future__ import annotations

from dataclasses import dataclass, field

from .activity import Feed
from .bot_client import BotClient
from .config import RuntimeConfig, Settings
from .faults import FaultInjector
from .graph import Directory
from .installs import Installs
from .limits import CREATE_WINDOWS, GLOBAL_WINDOWS, THREAD_WINDOWS, MadeMoments, SlidingLimiter
from .signin import SignIns
from .state import Store
from .tokens import AccessTokenChecker, SigningKey


@dataclass
class Context:
    settings: Settings
    base_url: str  # https://127.0.0.1:<port>, known once the socket is bound
    key: SigningKey
    config: RuntimeConfig
    store: Store = field(default_factory=Store)
    faults: FaultInjector = field(default_factory=FaultInjector)
    directory: Directory = field(default_factory=Directory)  # Microsoft Graph's users
    global_limiter: SlidingLimiter = field(default_factory=lambda: SlidingLimiter(GLOBAL_WINDOWS))
    global_made: MadeMoments = field(default_factory=lambda: MadeMoments(*GLOBAL_WINDOWS[0]))
    thread_limiter: SlidingLimiter = field(default_factory=lambda: SlidingLimiter(THREAD_WINDOWS))
    create_limiter: SlidingLimiter = field(default_factory=lambda: SlidingLimiter(CREATE_WINDOWS))
    tokens: AccessTokenChecker = field(init=False)
    bot: BotClient = field(init=False)
    installs: Installs = field(init=False)  # Microsoft Graph's app catalog and installations
    feed: Feed = field(default_factory=Feed)  # Microsoft Graph's activity feed notifications
    sign_ins: SignIns = field(default_factory=SignIns)  # Entra's sign-in for people: settings and codes

    def __post_init__(self) -> None:
        self.tokens = AccessTokenChecker(self.key, self.settings.app_id)
        self.bot = BotClient(self.key, self.settings.app_id)
        self.installs = Installs(self.settings.app_id)
        self.faults.reseed(self.config.seed)

    @property
    def service_url(self) -> str:
        return f"{self.base_url}/teams/"

    @property
    def openid_metadata_url(self) -> str:
        return f"{self.base_url}/botframework/v1/.well-known/openidconfiguration"

    def reset(self) -> None:
        """Forgets users, conversations, messages, windows and counters, the directory, the app catalog and
        the sign-in settings and codes; keeps keys and config."""
        self.store.reset()
        self.directory.reset()
        self.sign_ins.reset()
        self.installs.reset()
        self.feed.reset()
        self.faults.clear_counts()
        self.faults.reseed(self.config.seed)
        self.global_limiter.clear()
        self.global_made.clear()
        self.thread_limiter.clear()
        self.create_limiter.clear()
