"""``esrgan registry list|promote|rollback``: the model registry's versions and the champion alias."""

from __future__ import annotations

import argparse

from pipeline.cli.common import UserError, print_json, registry_call, tracking_uri


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("registry", help="the model registry: list versions, promote one, roll the champion back")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--model-name", default="esrgan-x4", help="registered model (default esrgan-x4)")
    p.add_argument("--alias", default="champion", help="the deployed alias (default champion)")
    rsub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    ls = rsub.add_parser("list", help="versions, aliases, alpha, key metrics, data hash, commit, decision")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=lambda a: registry_call(lambda: _registry_list(a)))
    pr = rsub.add_parser("promote", help="make VERSION the champion (recorded in the champion history)")
    pr.add_argument("version", help="version number")
    pr.set_defaults(handler=lambda a: registry_call(lambda: _registry_promote(a)))
    rb = rsub.add_parser("rollback", help="move the champion back to the previous champion")
    rb.set_defaults(handler=lambda a: registry_call(lambda: _registry_rollback(a)))


def _registry_list(args: argparse.Namespace) -> int:
    from pipeline.registry import aliases

    client = aliases.client(tracking_uri(args.tracking_uri))
    rows = aliases.list_versions(client, args.model_name)
    past = aliases.history(client, args.model_name)
    if args.json:
        return print_json({"model_name": args.model_name, "versions": rows, "champion_history": past})
    print(aliases.format_table(args.model_name, rows, past))
    return 0


def _registry_promote(args: argparse.Namespace) -> int:
    from pipeline.registry import aliases

    if not args.version.isdigit():
        raise UserError(f"version {args.version!r}: expected a version number")
    client = aliases.client(tracking_uri(args.tracking_uri))
    before = aliases.alias_version(client, args.model_name, args.alias)
    past = aliases.promote(
        client, args.model_name, args.version, args.alias, "promoted by hand (esrgan registry promote)"
    )
    with aliases.registry_errors(args.model_name):
        client.set_model_version_tag(args.model_name, args.version, "decision", "promoted-by-hand")
    print(
        f"{args.model_name}@{args.alias}: version {before or '(none)'} -> {args.version}  (history: {' -> '.join(past)})"
    )
    return 0


def _registry_rollback(args: argparse.Namespace) -> int:
    from pipeline.registry import aliases

    client = aliases.client(tracking_uri(args.tracking_uri))
    old, new = aliases.rollback(client, args.model_name, args.alias)
    past = aliases.history(client, args.model_name)
    print(f"{args.model_name}@{args.alias}: version {old} -> {new}  (history: {' -> '.join(past)})")
    return 0
