"""The gateway's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "shardgate_requests",
            "Requests by route, model and status",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "shardgate_request_duration_seconds",
            "Time from request to the last byte of the response",
            ["route", "model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "shardgate_time_to_first_token_seconds",
            "Time to the first generated token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "shardgate_time_per_output_token_seconds",
            "Mean time per generated token after the first",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "shardgate_tokens",
            "Tokens in prompts (in) and completions (out)",
            ["model", "direction"],
            registry=r,
        )
        self.in_flight = Gauge(
            "shardgate_requests_in_flight",
            "Requests being served",
            ["route"],
            registry=r,
        )
        self.auth_failures = Counter(
            "shardgate_auth_failures",
            "Requests refused for a missing, unknown, revoked or expired key (the caller "
            "is only ever told that the key is not valid)",
            ["reason"],
            registry=r,
        )
        self.rejections = Counter(
            "shardgate_rejections",
            "Requests refused before reaching a shard, by reason (rate and concurrency "
            "limits, budgets, edge protection, load shedding)",
            ["reason"],
            registry=r,
        )
        self.limiter_latency = Histogram(
            "shardgate_limiter_duration_seconds",
            "Time the rate limiter took to admit or refuse a request",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
            registry=r,
        )
        self.counter_store_errors = Counter(
            "shardgate_counter_store_errors",
            "Failed operations on the counter store (Redis)",
            registry=r,
        )
        self.counter_store_switches = Counter(
            "shardgate_counter_store_switches",
            "Switches between using the counter store and failing open/closed without it",
            ["to"],
            registry=r,
        )
        self.safety_events = Counter(
            "shardgate_safety_events",
            "What the content filter (input), the safety monitor (output) and the moderation "
            "endpoint found, by detector and the action taken",
            ["stage", "detector", "action"],
            registry=r,
        )
        self.safety_detector_errors = Counter(
            "shardgate_safety_detector_errors",
            "Safety detectors that failed on a request, by the detector and whether the "
            "request went on unchecked (open) or was refused (closed)",
            ["detector", "mode"],
            registry=r,
        )
        self.safety_latency = Histogram(
            "shardgate_safety_duration_seconds",
            "Time the content filter (input) and each output check took",
            ["stage"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.shard_up = Gauge(
            "shardgate_shard_up",
            "1 when the shard answers its readiness check",
            ["shard"],
            registry=r,
        )
        self.shard_errors = Counter(
            "shardgate_shard_errors",
            "Failed attempts to reach a shard",
            ["shard"],
            registry=r,
        )
