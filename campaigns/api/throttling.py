"""Per-key rate limits (``API_RATE_LIMIT``, e.g. ``1200/min``), counted in Redis so every web process
shares them; over the limit a call gets 429 with ``Retry-After``."""

from rest_framework.throttling import SimpleRateThrottle

from campaigns.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return None  # unauthenticated calls are refused before any work
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class GroupSearchThrottle(ApiKeyRateThrottle):
    """Searching groups asks Microsoft Graph, whose limits the people sync and the listings share: at most a
    search a second on average per key, on top of the key's own limit."""

    scope = "group_search"
    rate = "60/min"

    def get_rate(self):
        return self.rate
