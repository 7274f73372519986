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

from shardgate.settings import ModelSpec, Settings, SettingsError, load_settings

__all__ = ["main"]

log = logging.getLogger("shardgate")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "data_dir": getattr(args, "data_dir", None),
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

    def command(name: str, run: Any, help: str, listen: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--data-dir", type=Path, help="data directory (default ./var)")
        if listen:
            p.add_argument("--host", help="listen address (default 127.0.0.1)")
            p.add_argument("--port", type=int, help="listen port")
        return p

    command("up", _up, "run the gateway and its shards, supervised (the embedded default)")
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
    return parser


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.serve import configure_logging
    from shardgate.supervisor import Supervisor, plan_children

    configure_logging(settings.log_level, "up")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_ensure_admin_key(settings, announce=True))
    children, _ = plan_children(settings, str(args.config) if args.config else None)
    print(
        f"shardgate: gateway on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir}); Ctrl-C stops everything",
        flush=True,
    )
    asyncio.run(Supervisor(children).run())
    return 0


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.app import create_gateway_app
    from shardgate.serve import configure_logging, serve
    from shardgate.settings import ShardEndpoint

    configure_logging(settings.log_level, "gateway")
    if args.shard:
        shards = tuple(ShardEndpoint(url=u) for u in args.shard)
        settings = settings.model_copy(update={"shards": shards})
    asyncio.run(_ensure_admin_key(settings, announce=False))
    serve(create_gateway_app(settings), settings.host, settings.port, settings.log_level)
    return 0


def _shard(settings: Settings, args: argparse.Namespace) -> int:
    from shardgate.serve import configure_logging, serve
    from shardgate.shard.pool import ModelPool
    from shardgate.shard.server import create_shard_app

    configure_logging(settings.log_level, f"shard:{settings.port}")
    # Weights come from installed packages only; never reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        specs = _pick_models(settings, args.models, args.engine)
    except SettingsError as exc:
        print(f"shardgate: {exc}", file=sys.stderr)
        return 2
    pool = ModelPool(settings, specs)
    serve(create_shard_app(settings, pool), settings.host, settings.port, settings.log_level)
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


async def _ensure_admin_key(settings: Settings, announce: bool) -> None:
    from shardgate.app import key_store_for
    from shardgate.store import generate_key

    store = key_store_for(settings)
    if await store.has_admin():
        return
    if settings.bootstrap_key is not None:
        await store.add(settings.bootstrap_key.get_secret_value(), tenant="default", role="admin")
        log.info("the bootstrap key is now the first admin key")
        return
    if not announce:
        log.warning("no API key exists yet: set SHARDGATE_BOOTSTRAP_KEY or run 'shardgate up'")
        return
    secret = generate_key()
    await store.add(secret, tenant="default", role="admin")
    print(
        "shardgate: created the first admin API key; it is shown only this once:\n\n"
        f"    {secret}\n",
        flush=True,
    )
