"""Rate limits and token budgets per key and tenant, and the counter stores behind them."""

from shardgate.limits.counters import (
    Change,
    Check,
    CounterStore,
    CounterStoreError,
    MemoryCounters,
    Outcome,
    Verdict,
)
from shardgate.limits.limiter import Admission, RateLimiter
from shardgate.limits.redis_counters import RedisCounters
from shardgate.settings import LimitSettings, Settings, SettingsError
from shardgate.store import Limits

__all__ = [
    "Admission",
    "Change",
    "Check",
    "CounterStore",
    "CounterStoreError",
    "MemoryCounters",
    "Outcome",
    "RateLimiter",
    "RedisCounters",
    "Verdict",
    "check_counter_settings",
    "counters_for",
    "limits_of",
]


def counters_for(settings: Settings) -> CounterStore:
    c = settings.counters
    if c.backend == "redis":
        return RedisCounters(c.redis_url, c.namespace, c.timeout_s)
    return MemoryCounters()


def check_counter_settings(settings: Settings) -> None:
    """In-process counters are exact for one gateway process only: refuse more."""
    if settings.gateway_replicas > 1 and settings.counters.backend == "memory":
        raise SettingsError(
            f"gateway_replicas is {settings.gateway_replicas}, but counters.backend is "
            "'memory': limits would be multiplied by the replicas; set counters.backend "
            "to 'redis'"
        )


def limits_of(defaults: LimitSettings) -> Limits:
    """Default limits from the settings, as the store's ``Limits``."""
    return Limits(**defaults.model_dump())
