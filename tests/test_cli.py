"""The `tollgate` command as a user runs it: create-admin, tokens, adjust, migrate, serve's checks."""

from __future__ import annotations

import asyncio
import os
import subprocess

from devkit.embedded import free_port
from gateway.accounts import access_tokens, users
from tests.support.accounts import balance_of, deposit, make_token
from tests.support.processes import TOLLGATE, gateway_env, run_cli


def test_create_admin_is_idempotent(servers, database):
    first = run_cli(servers, "create-admin", "--email", "boss@example.com", "--password", "long password 1")
    second = run_cli(servers, "create-admin", "--email", "boss@example.com", "--password", "long password 2")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split("user id")[1] == second.stdout.split("user id")[1]


def test_create_admin_refuses_a_short_password(servers, database):
    done = run_cli(servers, "create-admin", "--email", "boss@example.com", "--password", "short")
    assert done.returncode == 2


async def test_issue_token_prints_a_token_stored_only_as_its_hash(servers, database):
    done = run_cli(servers, "issue-token", "--email", "desk@example.com", "--hours", "2",
                   "--scope", "certificates_only")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert access_tokens.looks_valid(token)
    row = await database.fetchrow("SELECT scope, token_hash FROM access_tokens")
    assert row["scope"] == "certificates_only" and bytes(row["token_hash"]) == access_tokens.digest(token)


def test_issue_token_refuses_a_bad_scope_or_duration(servers, database):
    assert run_cli(servers, "issue-token", "--email", "d@example.com", "--hours", "1",
                   "--scope", "everything").returncode == 2
    assert run_cli(servers, "issue-token", "--email", "d@example.com", "--hours", "0").returncode == 2


async def test_revoke_token_revokes_and_writes_the_tombstone(servers, database, redis_client):
    issued = await make_token(database)
    done = run_cli(servers, "revoke-token", "--id", str(issued.id))
    assert done.returncode == 0 and f"token {issued.id} revoked" in done.stdout, done.stderr
    assert await redis_client.hget(f"tg:{{{access_tokens.digest(issued.token).hex()}}}:rec", "state") == "revoked"


async def test_revoke_token_with_redis_down_says_the_refusal_is_queued_in_one_line(servers, database):
    """ATTACK-2026-12-01 L13: the revocation was committed but the command printed a traceback.
    Now the refusal is queued with it (decision 0015): done, and said in one line."""
    issued = await make_token(database)
    env = {**gateway_env(servers), "TOLLGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = subprocess.run([*TOLLGATE, "revoke-token", "--id", str(issued.id)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and len(done.stdout.strip().splitlines()) == 1
    assert "revoked" in done.stdout and "queued" in done.stdout
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 1
    assert await database.fetchval("SELECT revoked_at FROM access_tokens WHERE id = $1", issued.id) is not None


def test_revoke_token_of_an_unknown_id_exits_1(servers, database):
    done = run_cli(servers, "revoke-token", "--id", "999999")
    assert done.returncode == 1 and "no token with id 999999" in done.stderr


def test_migrate_reports_an_up_to_date_schema(servers):
    done = run_cli(servers, "migrate")
    assert done.returncode == 0 and "up to date" in done.stdout


def test_serve_names_a_missing_setting():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    done = subprocess.run([*TOLLGATE, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "TOLLGATE_DATABASE_URL" in done.stderr


MOST = "999999999.999999"  # the largest amount an adjustment takes (10^15 micro-credits less one)


async def test_the_adjust_command_reports_an_out_of_range_amount(servers, database):
    import subprocess

    from tests.support.processes import run_cli

    user_id = await users.ensure_client(database, email="cli@example.com")
    for _ in range(10):  # nearly 10^10 credits, the most a balance may hold
        await deposit(database, user_id, 999_999_999)
    done = run_cli(servers, "adjust", "--email", "cli@example.com", "--credits", MOST, "--reason", "r")
    assert done.returncode == 1 and "past the most an account may hold" in done.stderr
    assert "Traceback" not in done.stderr
    assert isinstance(done, subprocess.CompletedProcess)


def test_serve_refuses_to_start_with_the_default_log_sender(servers, mock_target):
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(free_port()))
    del env["TOLLGATE_MAIL_SENDER"]  # the default
    try:
        done = subprocess.run([*TOLLGATE, "serve"], env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as error:
        raise AssertionError("serve started with the log mail sender") from error
    assert done.returncode == 2
    assert "TOLLGATE_MAIL_SENDER" in done.stderr and "Traceback" not in done.stderr


async def test_the_adjust_command_tops_up_once_per_key(servers, database):
    user_id = await users.ensure_client(database, email="cli@example.com")
    args = ("adjust", "--email", "cli@example.com", "--credits", "7.5", "--reason", "support ticket 9",
            "--idempotency-key", "ticket-9")
    first = await asyncio.to_thread(run_cli, servers, *args)
    again = await asyncio.to_thread(run_cli, servers, *args)
    assert first.returncode == 0 and "balance now 7.5" in first.stdout, first.stderr
    assert again.returncode == 0 and "replayed" in again.stdout
    assert await balance_of(database, user_id) == 7_500_000
    negative = await asyncio.to_thread(run_cli, servers, "adjust", "--email", "cli@example.com", "--credits",
                                       "-10", "--reason", "too much")
    assert negative.returncode == 1 and "too few credits" in negative.stderr
    bad = await asyncio.to_thread(run_cli, servers, "adjust", "--email", "cli@example.com", "--credits",
                                  "ten", "--reason", "x")
    nobody = await asyncio.to_thread(run_cli, servers, "adjust", "--email", "ghost@example.com", "--credits",
                                     "1", "--reason", "x")
    assert (bad.returncode, nobody.returncode) == (2, 1)
    assert await balance_of(database, user_id) == 7_500_000
