"""The ``shardgate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from shardgate.admin.cli import add_admin_commands
from shardgate.settings import ModelSpec, Settings, SettingsError, load_settings

__all__ = ["main"]

log = logging.getLogger("shardgate")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "data_dir": getattr(args, "data_dir", None),
        "database_url": getattr(args, "database_url", None),
    }
    try:
        settings = load_settings(args.config, overrides)
    except SettingsError as exc:
        print(f"shardgate: {exc}".replace("\n", "\nshardgate: "), file=sys.stderr)
        return 2
    try:
        result: int = args.run(settings, args)
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardgate", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--data-dir", type=Path, help="data directory (default ./var)")
        p.add_argument(
            "--database-url",
            help="postgresql://... or sqlite:///... (default: SQLite in the data directory)",
        )

    def command(name: str, run: Any, help: str, listen: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        common(p)
        if listen:
            p.add_argument("--host", help="listen address (default 127.0.0.1)")
            p.add_argument("--port", type=int, help="listen port")
        return p

    up = command("up", _up, "run the gateway and its shards, supervised (the embedded default)")
    up.add_argument(
        "--tls",
        action="store_true",
        help="TLS 1.3 on the gateway and mutual TLS to the shards, with certificates from "
        "'certs init' (created if missing)",
    )
    gateway = command("gateway", _gateway, "run the gateway alone")
    gateway.add_argument(
        "--shard",
        action="append",
        default=[],
        metavar="URL",
        help="a shard to route to (repeatable); overrides the settings",
    )
    shard = command("shard", _shard, "run one shard serving some models")
    shard.add_argument(
        "--models",
        help="comma-separated model names (default: all chat and "
        "embedding models in the catalogue)",
    )
    shard.add_argument(
        "--engine",
        choices=["transformers", "fake"],
        help="override the models' engine ('fake' is for benchmarks)",
    )
    models = command(
        "models", _models, "list the models and where their weights come from", listen=False
    )
    models.add_argument("--json", action="store_true", help="machine-readable output")
    certs = sub.add_parser(
        "certs", help="the private CA and TLS certificates", description="TLS certificates"
    )
    certs_commands = certs.add_subparsers(required=True, metavar="COMMAND")
    certs_init = certs_commands.add_parser(
        "init",
        help="create a private CA and gateway/shard certificates in <data_dir>/certs",
        description="create a private CA and gateway/shard certificates in <data_dir>/certs; "
        "existing files are kept",
    )
    certs_init.set_defaults(run=_certs_init)
    common(certs_init)
    certs_init.add_argument(
        "--force", action="store_true", help="replace every file, the CA included"
    )
    certs_init.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address the certificates are valid for (repeatable)",
    )
    certs_init.add_argument("--json", action="store_true", help="machine-readable output")
    add_admin_commands(sub, common)
    return parser


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.serve import configure_logging
    from shardgate.supervisor import Supervisor, plan_children

    configure_logging(settings.log_level, "up")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if args.tls:
        from shardgate.security import CertError, init_certs, with_certs

        names = [] if settings.host in ("0.0.0.0", "::") else [settings.host]
        try:
            files = init_certs(settings.certs_dir, names)
        except CertError as exc:
            print(f"shardgate: {exc}", file=sys.stderr)
            return 2
        if files.missing_names:
            missing = ", ".join(files.missing_names)
            log.warning("kept certificates do not name %s; certs init --force reissues", missing)
        settings = with_certs(settings, files)
    if (code := _prepare_database(settings, announce=True)) != 0:
        return code
    children, _ = plan_children(settings, str(args.config) if args.config else None)
    scheme = "https" if settings.tls.cert_file else "http"
    print(
        f"shardgate: gateway on {scheme}://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir}); Ctrl-C stops everything",
        flush=True,
    )
    if args.tls:
        print(f"shardgate: TLS 1.3 only; clients trust {settings.shard_tls.ca_file}", flush=True)
    asyncio.run(Supervisor(children).run())
    return 0


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.limits import check_counter_settings
    from shardgate.security import check_shard_urls, gateway_listener
    from shardgate.serve import configure_logging, serve
    from shardgate.settings import ShardEndpoint

    configure_logging(settings.log_level, "gateway")
    if args.shard:
        shards = tuple(ShardEndpoint(url=u) for u in args.shard)
        settings = settings.model_copy(update={"shards": shards})
    try:
        check_shard_urls(settings)
        check_counter_settings(settings)
        tls = gateway_listener(settings)
    except SettingsError as exc:
        print(f"shardgate: {exc}".replace("\n", "\nshardgate: "), file=sys.stderr)
        return 2
    from shardgate.app import create_gateway_app

    if (code := _prepare_database(settings, announce=False)) != 0:
        return code
    app = create_gateway_app(settings)
    serve(app, settings.host, settings.port, settings.log_level, tls, settings.edge)
    return 0


def _shard(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.security import shard_listener
    from shardgate.serve import configure_logging, serve

    configure_logging(settings.log_level, f"shard:{settings.port}")
    # Weights come from installed packages only; never reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        specs = _pick_models(settings, args.models, args.engine)
        tls = shard_listener(settings)
    except SettingsError as exc:
        print(f"shardgate: {exc}", file=sys.stderr)
        return 2
    # Imported only now: torch takes seconds to load, and a refusal should not wait for it.
    from shardgate.shard.pool import ModelPool
    from shardgate.shard.server import create_shard_app

    pool = ModelPool(settings, specs)
    serve(create_shard_app(settings, pool), settings.host, settings.port, settings.log_level, tls)
    return 0


def _pick_models(settings: Settings, names: str | None, engine: str | None) -> list[ModelSpec]:
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    specs = list(settings.models) if wanted is None else []
    for name in wanted or []:
        spec = settings.model(name)
        if spec is None:
            known = ", ".join(m.name for m in settings.models)
            raise SettingsError(f"unknown model '{name}' (known: {known})")
        specs.append(spec)
    if engine:
        specs = [s.model_copy(update={"engine": engine}) if s.kind == "chat" else s for s in specs]
    return specs


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.shard.catalog import ModelUnavailable, find_source

    rows = []
    for spec in settings.models:
        row: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "engine": spec.engine}
        try:
            source = find_source(spec)
        except ModelUnavailable as exc:
            row.update(installed=False, source=str(exc))
        else:
            row.update(installed=True, source=source.origin, files=str(source.folder))
            if source.gguf_file:
                cache = settings.models_dir / spec.name
                row.update(
                    gguf=source.gguf_file,
                    converted=str(cache),
                    is_converted=(cache / "config.json").exists(),
                )
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "installed" if row["installed"] else "MISSING"
        print(f"{row['name']:<24} {row['kind']:<10} {state:<10} {row['source']}")
        if row.get("gguf"):
            done = "converted" if row["is_converted"] else "converted on first load"
            print(f"{'':<24} GGUF {row['gguf']} -> {row['converted']} ({done})")
    return 0


def _certs_init(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.security import CertError, init_certs

    try:
        files = init_certs(settings.certs_dir, args.san, force=args.force)
    except (CertError, OSError) as exc:
        print(f"shardgate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(files.describe(), indent=2))
        return 0
    for path in files.paths:
        print(f"{'created' if path in files.created else 'kept':<8} {path}")
    if files.missing_names:
        names = ", ".join(files.missing_names)
        print(f"shardgate: kept certificates do not name {names}; --force reissues them")
    return 0


def _prepare_database(settings: Settings, announce: bool) -> int:
    """Upgrade the schema in place and make sure an admin key exists."""
    from shardgate.admin.bootstrap import ensure_admin_key, prepare_database
    from shardgate.store import STORE_ERRORS

    async def prepare() -> str | None:
        store = await prepare_database(settings)
        try:
            bootstrap = settings.bootstrap_key
            secret = bootstrap.get_secret_value() if bootstrap is not None else None
            return await ensure_admin_key(store, secret, generate=announce)
        finally:
            await store.close()

    try:
        secret = asyncio.run(prepare())
    except STORE_ERRORS as exc:
        print(f"shardgate: cannot prepare the database: {exc}", file=sys.stderr)
        return 1
    if secret is not None:
        print(
            "shardgate: created the first admin API key; it is shown only this once:\n\n"
            f"    {secret}\n",
            flush=True,
        )
    return 0
