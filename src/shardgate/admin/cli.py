"""``shardgate db``, ``tenants``, ``keys`` and ``safety``: the admin API's rules,
applied directly to the store (``--data-dir`` or ``SHARDGATE_DATABASE_URL``) by the
platform operator. Safe while gateways run: they see changes within their key cache TTL."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from shardgate.admin.bootstrap import prepare_database
from shardgate.admin.protocol import (
    ApiKeyCreated,
    ApiKeyObject,
    ApiKeyRotated,
    SafetyEventObject,
    SafetyPolicyObject,
    SafetyPolicyUpdate,
    TenantObject,
)
from shardgate.admin.service import OPERATOR, AdminService
from shardgate.errors import InvalidRequest, ShardgateError
from shardgate.settings import Settings
from shardgate.store import ROLES, STORE_ERRORS, Limits, database_url

__all__ = ["add_admin_commands"]

AddCommand = Callable[..., argparse.ArgumentParser]
Action = Callable[[AdminService, argparse.Namespace], Awaitable[Any]]


def add_admin_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    def group(name: str, help: str) -> Any:
        parser = sub.add_parser(name, help=help, description=help)
        return parser.add_subparsers(required=True, metavar="COMMAND")

    def command(commands: Any, name: str, action: Action, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        p.set_defaults(run=_runner(action))
        common(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    db = group("db", "the database: schema migrations")
    upgrade = db.add_parser("upgrade", help="upgrade the schema in place to the newest revision")
    upgrade.set_defaults(run=_db_upgrade)
    common(upgrade)
    upgrade.add_argument("--json", action="store_true", help="machine-readable output")

    tenants = group("tenants", "tenants: who keys belong to")
    create = command(tenants, "create", _tenant_create, "create a tenant")
    create.add_argument("name")
    _limit_options(create)
    limits = command(tenants, "set-limits", _tenant_limits, "replace a tenant's limits")
    limits.add_argument("name")
    _limit_options(limits)
    command(tenants, "list", _tenant_list, "list the tenants")
    show = command(tenants, "show", _tenant_show, "show one tenant")
    show.add_argument("name")
    safety = command(
        tenants, "set-safety", _tenant_set_safety, "replace a tenant's safety policy override"
    )
    safety.add_argument("name")
    safety.add_argument(
        "policy",
        type=_text_or_file,
        help='JSON, e.g. \'{"input": {"pii": "block"}}\', or @FILE; {} = the default',
    )
    safety = command(tenants, "show-safety", _tenant_show_safety, "a tenant's safety policy")
    safety.add_argument("name")

    events = group("safety", "safety events: what the content filter and monitor found")
    listing = command(events, "events", _safety_events, "safety events, newest first")
    listing.add_argument("--tenant")
    listing.add_argument("--since", type=float, help="Unix time")
    listing.add_argument("--limit", type=_positive, default=100)

    keys = group("keys", "API keys: create, list, revoke, rotate")
    create = command(keys, "create", _key_create, "create a key; its secret is shown once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", choices=ROLES, default="user")
    create.add_argument("--endpoints", default="", help="comma-separated, or * (default: none)")
    create.add_argument("--models", default="", help="comma-separated, or * (default: none)")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--expires-in", help="e.g. 3600, 30d, 12h (default: never)")
    _limit_options(create)
    limits = command(keys, "set-limits", _key_limits, "replace a key's limits")
    limits.add_argument("id")
    _limit_options(limits)
    listing = command(keys, "list", _key_list, "list keys (never their secrets)")
    listing.add_argument("--tenant")
    revoke = command(keys, "revoke", _key_revoke, "revoke a key")
    revoke.add_argument("id")
    rotate = command(keys, "rotate", _key_rotate, "give a key a new secret")
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace", default="0", help="how long the old secret keeps working (e.g. 1h, 7d)"
    )


def _limit_options(parser: argparse.ArgumentParser) -> None:
    """--rpm, --tpm, --concurrency, --daily-tokens, --monthly-tokens (unset: the default)."""
    for name, help in (
        ("rpm", "requests per minute"),
        ("tpm", "prompt + completion tokens per minute"),
        ("concurrency", "requests in flight at once"),
        ("daily-tokens", "tokens per UTC day, a hard stop"),
        ("monthly-tokens", "tokens per UTC month, a hard stop"),
    ):
        parser.add_argument(f"--{name}", type=_positive, metavar="N", help=help)


def _text_or_file(text: str) -> str:
    if not text.startswith("@"):
        return text
    try:
        with open(text[1:], encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return value


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(args.rpm, args.tpm, args.concurrency, args.daily_tokens, args.monthly_tokens)


def _runner(action: Action) -> Callable[[Settings, argparse.Namespace], int]:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            result = asyncio.run(_with_service(settings, args, action))
        except ShardgateError as exc:
            _fail(exc.message, args.json, exc.body())
            return 1
        except STORE_ERRORS as exc:
            _fail(f"cannot use the database: {exc}", args.json)
            return 1
        _print(result, args.json)
        return 0

    return run


async def _with_service(settings: Settings, args: argparse.Namespace, action: Action) -> Any:
    store = await prepare_database(settings)
    try:
        return await action(AdminService(store, safety_default=settings.safety.policy), args)
    finally:
        await store.close()


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    async def upgrade() -> str:
        store = await prepare_database(settings)
        await store.close()
        from shardgate.store.database import head_revision

        return head_revision()

    try:
        revision = asyncio.run(upgrade())
    except STORE_ERRORS as exc:
        _fail(f"cannot upgrade the database: {exc}", args.json)
        return 1
    url = database_url(settings)
    where = url.split("@")[-1] if "@" in url else url  # never print a password
    _print(
        {"database": where, "revision": revision}
        if args.json
        else f"{where} is at revision {revision}",
        args.json,
    )
    return 0


async def _tenant_create(service: AdminService, args: argparse.Namespace) -> BaseModel:
    return TenantObject.of(await service.create_tenant(OPERATOR, args.name, _limits(args)))


async def _tenant_limits(service: AdminService, args: argparse.Namespace) -> BaseModel:
    return TenantObject.of(await service.set_tenant_limits(OPERATOR, args.name, _limits(args)))


async def _tenant_list(service: AdminService, args: argparse.Namespace) -> list[BaseModel]:
    return [TenantObject.of(t) for t in await service.list_tenants(OPERATOR)]


async def _tenant_show(service: AdminService, args: argparse.Namespace) -> BaseModel:
    return TenantObject.of(await service.get_tenant(OPERATOR, args.name))


async def _tenant_set_safety(service: AdminService, args: argparse.Namespace) -> BaseModel:
    try:
        update = SafetyPolicyUpdate.model_validate_json(args.policy)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidRequest(f"invalid safety policy: {problems}", param="policy") from None
    tenant = await service.set_safety_policy(OPERATOR, args.name, update.override())
    return SafetyPolicyObject.of(tenant, service.effective_policy(tenant))


async def _tenant_show_safety(service: AdminService, args: argparse.Namespace) -> BaseModel:
    tenant = await service.get_tenant(OPERATOR, args.name)
    return SafetyPolicyObject.of(tenant, service.effective_policy(tenant))


async def _safety_events(service: AdminService, args: argparse.Namespace) -> list[BaseModel]:
    events = await service.list_safety_events(
        OPERATOR, args.tenant, since=args.since, limit=args.limit
    )
    return [SafetyEventObject.of(e) for e in events]


async def _key_create(service: AdminService, args: argparse.Namespace) -> BaseModel:
    issued = await service.create_key(
        OPERATOR,
        tenant=args.tenant,
        role=args.role,
        endpoints=_split(args.endpoints),
        models=_split(args.models),
        name=args.name,
        expires_in=args.expires_in,
        limits=_limits(args),
    )
    return ApiKeyCreated.issued(issued.key, issued.secret)


async def _key_limits(service: AdminService, args: argparse.Namespace) -> BaseModel:
    return ApiKeyObject.of(await service.set_key_limits(OPERATOR, args.id, _limits(args)))


async def _key_list(service: AdminService, args: argparse.Namespace) -> list[BaseModel]:
    return [ApiKeyObject.of(k) for k in await service.list_keys(OPERATOR, args.tenant)]


async def _key_revoke(service: AdminService, args: argparse.Namespace) -> BaseModel:
    return ApiKeyObject.of(await service.revoke_key(OPERATOR, args.id))


async def _key_rotate(service: AdminService, args: argparse.Namespace) -> BaseModel:
    issued, old_until = await service.rotate_key(OPERATOR, args.id, args.grace)
    return ApiKeyRotated.rotated(issued.key, issued.secret, old_until)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _print(result: Any, as_json: bool) -> None:
    if isinstance(result, str):
        print(result)
        return
    rows = result if isinstance(result, list) else [result]
    data = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in rows]
    if as_json:
        print(json.dumps(data if isinstance(result, list) else data[0], indent=2))
        return
    for row in data:
        print("  ".join(f"{k}={_text(v)}" for k, v in row.items() if k != "object"))
    if any("key" in row for row in data):
        print("shardgate: the key is shown only this once; store it now", file=sys.stderr)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items() if v is not None) or "default"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _fail(message: str, as_json: bool, body: dict[str, Any] | None = None) -> None:
    if as_json:
        print(json.dumps(body or {"error": {"message": message, "type": "error"}}))
    print(f"shardgate: {message}", file=sys.stderr)
