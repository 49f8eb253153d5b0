"""Injected failures: a seedable random draw per create-conversation or send call."""

from __future__ import annotations

import random

from .config import FAULT_KINDS, FaultConfig

# The error body each injected status answers with.
FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "status_503": (503, "ServiceUnavailable", "The service is temporarily unavailable (injected fault)."),
    "status_502": (502, "BadGateway", "Bad gateway (injected fault)."),
    "status_504": (504, "GatewayTimeout", "The gateway timed out (injected fault)."),
    "status_500": (500, "ServiceError", "Unknown error (injected fault)."),
    "status_412": (412, "PreconditionFailed", "Conflicting operations on the conversation (injected fault)."),
    "status_429": (429, "Throttled", "Too many requests (injected fault)."),
    "timeout": (504, "GatewayTimeout", "The request timed out (injected fault)."),
}


class FaultInjector:
    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self.counts: dict[str, int] = {kind: 0 for kind in FAULT_KINDS}

    def reseed(self, seed: int | None) -> None:
        self._random = random.Random(seed)

    def draw(self, faults: FaultConfig) -> str | None:
        """The fault to inject on this call, or None. Draws only when some fault is switched on, so a
        seeded sequence depends only on the calls made while faults are on."""
        if not faults.any:
            return None
        roll = self._random.random()
        threshold = 0.0
        for kind in FAULT_KINDS:
            threshold += faults.probabilities[kind]
            if roll < threshold:
                self.counts[kind] += 1
                return kind
        return None

    def clear_counts(self) -> None:
        self.counts = {kind: 0 for kind in FAULT_KINDS}
