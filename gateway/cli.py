"""The `tollgate` command: serve, migrate, create-admin, issue-token, revoke-token, adjust, reconcile,
backup, restore.

The development run and the mock upstream are the dev kit's: `python -m devkit dev|mock-upstream`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys

from gateway.core import config


def _settings(**overrides) -> config.Settings:
    return config.load(**overrides)


async def _with_connection(settings: config.Settings, work):
    import asyncpg

    settings.require("database_url")
    connection = await asyncpg.connect(settings.database_url.value)
    try:
        return await work(connection)
    finally:
        await connection.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway import server

    settings = _settings(workers=args.workers, host=args.host, port=args.port)
    # As server.serve requires them: a missing store or target is named before the mail setting.
    settings.require("database_url", "redis_url", "target_url", "jwt_secret")
    if settings.mail_sender == "log":
        # The development sender prints login links where whoever reads the output can use them
        # (ATTACK-2026-12-01 M10).
        raise config.ConfigError(
            "TOLLGATE_MAIL_SENDER is 'log' (the default), which only the development run "
            "(`python -m devkit dev`) may use: it would "
            "print magic login links to the output. Set TOLLGATE_MAIL_SENDER=smtp (with TOLLGATE_SMTP_HOST, "
            "_PORT, _USERNAME, _PASSWORD, _STARTTLS and TOLLGATE_MAIL_FROM) or TOLLGATE_MAIL_SENDER=none "
            "(magic-link login off)")
    server.serve(settings)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.core import migrate

    settings = _settings()
    settings.require("database_url")
    if args.check:
        waiting = asyncio.run(migrate.pending(settings.database_url.value))
        print(f"{len(waiting)} migration(s) pending: {waiting}" if waiting else "schema is up to date")
        return 1 if waiting else 0
    applied = asyncio.run(migrate.apply(settings.database_url.value))
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from gateway.accounts import users

    if len(args.password) < 8:
        print("error: the password must have at least 8 characters", file=sys.stderr)
        return 2
    user_id = asyncio.run(_with_connection(
        _settings(), lambda c: users.ensure_admin(c, email=args.email, password=args.password)))
    print(f"admin {args.email} ready (user id {user_id})")
    return 0


def cmd_issue_token(args: argparse.Namespace) -> int:
    from gateway.accounts import access_tokens
    from gateway.accounts import users

    if not 0 < args.hours <= 24 * 366:
        print("error: --hours must be in (0, 8784]", file=sys.stderr)
        return 2

    async def work(connection):
        user_id = await users.ensure_client(connection, email=args.email)
        return await access_tokens.issue(connection, user_id=user_id, hours=args.hours, scope=args.scope,
                                  now=dt.datetime.now(dt.timezone.utc))

    issued = asyncio.run(_with_connection(_settings(), work))
    print(issued.token)
    print(f"# token id {issued.id}, scope {issued.scope}, expires {issued.expires_at.isoformat()}",
          file=sys.stderr)
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from gateway.accounts import access_tokens
    from gateway.accounts.credential_cache import CredentialOutbox
    from gateway.core import redis_client

    settings = _settings()

    async def work(connection):
        # Exit codes: 0 revoked (its refusal in Redis, or queued for it: decision 0015); 1 no such
        # token; 2 a setting is missing. The revocation and its cache refusal are queued in one
        # transaction (migration 0008).
        token_hash = await access_tokens.revoke(connection, args.id, now=dt.datetime.now(dt.timezone.utc))
        if token_hash is None or not settings.redis_url:
            return token_hash, True
        client = redis_client.connect(settings)
        try:
            outbox = CredentialOutbox(client, settings.auth_cache_ttl_s, settings.redis_revocation_replicas,
                                      int(settings.redis_timeout_s * 500))
            return token_hash, await outbox.push(connection)
        finally:
            await client.aclose()

    token_hash, pushed = asyncio.run(_with_connection(settings, work))
    if token_hash is None:
        print(f"error: no token with id {args.id}", file=sys.stderr)
        return 1
    if pushed:
        print(f"token {args.id} revoked")
    else:
        print(f"token {args.id} revoked; Redis is unreachable, so the refusal stays queued: every "
              "running gateway enforces it now and writes it to Redis when Redis answers")
    return 0


def cmd_adjust(args: argparse.Namespace) -> int:
    """Top up (+) or deduct (-) a user's credits from the command line; audited like the API."""
    import uuid

    import asyncpg

    import ledger
    from gateway.accounts import adjustments
    from gateway.accounts import users
    from gateway.core.errors import BadRequest

    try:
        amount, reason = adjustments.parse_adjustment({"credits": args.credits, "reason": args.reason})
    except BadRequest as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    settings = _settings()
    settings.require("database_url")

    async def work():
        pool = await asyncpg.create_pool(settings.database_url.value, min_size=1, max_size=1)
        try:
            user = await users.by_email(pool, args.email)
            if user is None:
                return None, None
            transfer = await adjustments.adjust_credits(
                pool, user_id=user.id, amount_micro=amount, reason=reason,
                key=args.idempotency_key or "cli:" + uuid.uuid4().hex, actor_id=None,
                now=dt.datetime.now(dt.timezone.utc), ip="cli")
            return transfer, await ledger.balance(pool, user.id)
        finally:
            await pool.close()

    try:
        transfer, balance = asyncio.run(work())
    except ledger.InsufficientBalance:
        print(f"error: {args.email} has too few credits for {args.credits}", file=sys.stderr)
        return 1
    except (ledger.IdempotencyConflict, ledger.AmountOutOfRange) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if transfer is None:
        print(f"error: no user with email {args.email}", file=sys.stderr)
        return 1
    print(f"transfer {transfer.id}{' (replayed)' if transfer.replayed else ''}: {args.email} "
          f"{ledger.format_micro(amount)} credits, balance now {ledger.format_micro(balance.available_micro)}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    import ledger

    report = asyncio.run(_with_connection(_settings(), ledger.reconcile))
    print(report.text())
    return 0 if report.ok else 1


def cmd_backup(args: argparse.Namespace) -> int:
    from gateway.core import backups

    settings = _settings()
    settings.require("database_url")
    try:
        size_bytes = backups.backup(settings.database_url.value, args.output)
    except backups.BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"backup written to {args.output} ({size_bytes} bytes, pg_dump custom format)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore into an empty database, then reconcile it: a restored ledger must balance."""
    import ledger
    from gateway.core import backups

    settings = _settings()
    settings.require("database_url")
    try:
        backups.restore(settings.database_url.value, args.input)
    except backups.BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = asyncio.run(_with_connection(settings, ledger.reconcile))
    print(f"restored {args.input}; reconciliation: {report.text()}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (configured by TOLLGATE_* variables)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes on one port")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--check", action="store_true", help="apply nothing; exit 1 if any is pending")
    migrate.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create (or reset) an admin account")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.set_defaults(func=cmd_create_admin)

    issue = sub.add_parser("issue-token", help="issue an access token; prints it once")
    issue.add_argument("--email", required=True)
    issue.add_argument("--hours", type=float, required=True)
    issue.add_argument("--scope", choices=("full", "certificates_only"), default="full")
    issue.set_defaults(func=cmd_issue_token)

    revoke = sub.add_parser("revoke-token", help="revoke an access token by id")
    revoke.add_argument("--id", type=int, required=True)
    revoke.set_defaults(func=cmd_revoke_token)

    adjust = sub.add_parser("adjust", help="top up (positive) or deduct (negative) a user's credits")
    adjust.add_argument("--email", required=True)
    adjust.add_argument("--credits", required=True, help='a decimal string, e.g. "25" or "-2.5"')
    adjust.add_argument("--reason", required=True)
    adjust.add_argument("--idempotency-key", default=None, help="repeat-safe: the same key applies once")
    adjust.set_defaults(func=cmd_adjust)

    sub.add_parser("reconcile", help="check every balance against the transfers; non-zero exit on a mismatch"
                   ).set_defaults(func=cmd_reconcile)

    backup = sub.add_parser("backup", help="dump the database to a file (pg_dump custom format)")
    backup.add_argument("--output", required=True, help="the backup file to write")
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser("restore", help="restore a backup into an empty database, then reconcile it")
    restore.add_argument("--input", required=True, help="a file written by `tollgate backup`")
    restore.set_defaults(func=cmd_restore)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
