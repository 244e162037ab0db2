"""`livechat admin` as operators run it: the real CLI process on SQLite and PostgreSQL.

Every document is compared as printed, byte for byte, so a number must be a JSON integer (`100`, not
`100.0`, `"100"` or a crash on a database's NUMERIC), and every refusal is compared as the exact
JSON error on stderr with its exit status.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from server.adapters.storage import Storage, open_storage
from tests.support import superlike_service, unique_name

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Done:
    status: int
    stdout: str
    stderr: str

    @property
    def error(self) -> dict[str, Any]:
        return json.loads(self.stderr)


def livechat(*args: str, database_url: str | None, cwd: Path = ROOT) -> Done:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("LIVECHAT_")}
    env["PYTHONPATH"] = str(ROOT)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    return Done(done.returncode, done.stdout, done.stderr)


def printed(document: dict[str, Any]) -> str:
    """What the CLI prints for `document`: indented JSON, integers as integers."""
    return json.dumps(document, indent=2) + "\n"


def assert_prints(done: Done, document: dict[str, Any]) -> None:
    assert (done.status, done.stderr, done.stdout) == (0, "", printed(document))


def assert_refuses(done: Done, reason: str, message: str, status: int = 1) -> None:
    assert (done.status, done.stdout) == (status, "")
    assert done.stderr == json.dumps({"error": reason, "message": message}) + "\n"


def new_id() -> str:
    return secrets.token_hex(12)


def create_user_via_cli(database_url: str, user_id: str, prefix: str) -> Done:
    """`livechat admin create-user` for a plain user with this id."""
    return livechat(
        "admin", "create-user", "--username", unique_name(prefix), "--name", prefix.upper(),
        "--surname", prefix.upper(), "--id", user_id, database_url=database_url,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cli_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    """A database of the module's own, created by `livechat db upgrade`, so settle, audit and purge
    see only what these tests wrote."""
    url = separate_database(database_url)
    assert_prints(livechat("db", "upgrade", database_url=url), {"upgraded": "head"})
    return url


@pytest_asyncio.fixture(scope="module")
async def cli_storage(cli_url: str) -> AsyncIterator[Storage]:
    async with open_storage(cli_url, pool_size=2) as storage:
        yield storage


def user(user_id: str, username: str, name: str, surname: str, photo: str, balance: int, pending: int) -> dict:
    return {
        "id": user_id,
        "username": username,
        "name": name,
        "surname": surname,
        "profilePhoto": photo,
        "balance": balance,
        "pendingCredits": pending,
    }


async def test_every_admin_command_prints_its_document_with_integer_numbers(cli_url: str, cli_storage: Storage) -> None:
    host, viewer, stream = new_id(), new_id(), new_id()
    host_name, viewer_name = unique_name("host"), unique_name("viewer")

    def run(*args: str) -> Done:
        return livechat("admin", *args, database_url=cli_url)

    assert_prints(
        run("create-user", "--username", host_name, "--name", "Hana", "--surname", "Host", "--id", host),
        user(host, host_name, "Hana", "Host", "", 0, 0),
    )
    assert_prints(
        run(
            "create-user",
            "--username",
            viewer_name,
            "--name",
            "A",
            "--surname",
            "B",
            "--profile-photo",
            "b.jpg",
            "--coins",
            "100",
            "--id",
            viewer.upper(),
        ),
        user(viewer, viewer_name, "A", "B", "b.jpg", 100, 0),
    )
    assert_prints(
        run("credit", "--user", viewer, "--coins", "50"), user(viewer, viewer_name, "A", "B", "b.jpg", 150, 0)
    )
    assert_prints(run("show-user", viewer), user(viewer, viewer_name, "A", "B", "b.jpg", 150, 0))

    created = {"id": stream, "hostId": host, "state": "scheduled", "superlikePrice": 7}
    assert_prints(run("create-stream", "--host", host, "--price", "7", "--id", stream), created)
    assert_prints(run("show-stream", stream), created)
    live = {**created, "state": "live"}
    assert_prints(run("start-stream", stream), {**live, "previousState": "scheduled", "changed": True})
    assert_prints(run("start-stream", stream), {**live, "previousState": "live", "changed": False})

    banned = {"streamId": stream, "userId": viewer, "banned": True}
    assert_prints(run("ban", "--stream", stream, "--user", viewer), banned)
    assert_prints(run("ban", "--stream", stream, "--user", viewer), banned)
    assert_prints(run("unban", "--stream", stream, "--user", viewer), {**banned, "banned": False})

    # One superlike leaves a pending host credit: a sum over BIGINT, NUMERIC on PostgreSQL.
    await superlike_service(cli_storage).send(stream, viewer, "order-1")
    assert_prints(run("show-user", host), user(host, host_name, "Hana", "Host", "", 7, 7))
    assert_prints(run("settle"), {"applied": 1})
    assert_prints(run("show-user", host), user(host, host_name, "Hana", "Host", "", 7, 0))
    assert_prints(run("show-user", viewer), user(viewer, viewer_name, "A", "B", "b.jpg", 143, 0))

    ended = {**created, "state": "ended"}
    assert_prints(run("end-stream", stream), {**ended, "previousState": "live", "changed": True})
    assert_prints(run("end-stream", stream), {**ended, "previousState": "ended", "changed": False})

    assert_prints(
        run("audit"),
        {
            "ok": True,
            "wallets": 2,
            "superlikes": 1,
            "totalBalance": 150,
            "pendingCredits": 0,
            "coinsIssued": 150,
            "problems": [],
        },
    )
    assert_prints(run("purge-idempotency-keys"), {"purged": 0, "olderThanHours": 24})
    async with cli_storage.engine.begin() as connection:
        await connection.execute(text("UPDATE superlikes SET created_at_ms = created_at_ms - 49 * 3600000"))
    assert_prints(run("purge-idempotency-keys", "--older-than-hours", "48"), {"purged": 1, "olderThanHours": 48})


def test_prices_outside_1_to_1_000_000_coins_are_refused(cli_url: str) -> None:
    host = new_id()
    create_user_via_cli(cli_url, host, "h")
    for price in ("0", "-3", "1000001"):
        assert_refuses(
            livechat("admin", "create-stream", "--host", host, "--price", price, database_url=cli_url),
            "INVALID_ARGUMENT",
            f"price must be a whole number of coins from 1 to 1,000,000, got {price}",
        )
    for price in ("1", "1000000"):
        done = livechat("admin", "create-stream", "--host", host, "--price", price, database_url=cli_url)
        assert (done.status, json.loads(done.stdout)["superlikePrice"]) == (0, int(price))


def test_coin_grants_outside_their_bounds_are_refused(cli_url: str) -> None:
    viewer = new_id()
    for coins in ("-1", "1000000001"):
        assert_refuses(
            livechat(
                "admin",
                "create-user",
                "--username",
                unique_name("v"),
                "--name",
                "V",
                "--surname",
                "V",
                "--coins",
                coins,
                database_url=cli_url,
            ),
            "INVALID_ARGUMENT",
            f"coins must be a whole number from 0 to 1,000,000,000, got {coins}",
        )
    create_user_via_cli(cli_url, viewer, "v")
    for coins in ("0", "-5", "1000000001"):
        assert_refuses(
            livechat("admin", "credit", "--user", viewer, "--coins", coins, database_url=cli_url),
            "INVALID_ARGUMENT",
            f"coins must be a whole number from 1 to 1,000,000,000, got {coins}",
        )
    assert_refuses(
        livechat("admin", "credit", "--user", viewer, "--coins", "ten", database_url=cli_url),
        "USAGE",
        "livechat admin credit: argument --coins: invalid int value: 'ten'",
        status=2,
    )


def test_a_duplicate_user_is_refused_naming_the_existing_user(cli_url: str) -> None:
    existing, name = new_id(), unique_name("dup")
    create = ("admin", "create-user", "--name", "D", "--surname", "D")
    assert livechat(*create, "--username", name, "--id", existing, database_url=cli_url).status == 0
    assert_refuses(
        livechat(*create, "--username", name, database_url=cli_url),
        "CONFLICT",
        f"username '{name}' is taken by user {existing}",
    )
    assert_refuses(
        livechat(*create, "--username", unique_name("other"), "--id", existing, database_url=cli_url),
        "CONFLICT",
        f"user {existing} already exists",
    )


def test_state_changes_the_lifecycle_forbids_are_refused_with_the_reason(cli_url: str) -> None:
    host, stream = new_id(), new_id()
    create_user_via_cli(cli_url, host, "h")
    livechat("admin", "create-stream", "--host", host, "--id", stream, "--state", "ended", database_url=cli_url)
    assert_refuses(
        livechat("admin", "start-stream", stream, database_url=cli_url),
        "CONFLICT",
        f"stream {stream} has ended; an ended stream cannot become live",
    )
    missing = new_id()
    assert_refuses(
        livechat("admin", "end-stream", missing, database_url=cli_url),
        "STREAM_NOT_FOUND",
        f"stream {missing} not found",
    )
    assert_refuses(
        livechat("admin", "show-user", missing, database_url=cli_url), "USER_NOT_FOUND", f"user {missing} not found"
    )
    assert_refuses(
        livechat("admin", "show-stream", "nope", database_url=cli_url),
        "INVALID_ARGUMENT",
        "stream id must be a 24-character hex id, got 'nope'",
    )


def test_purging_keys_younger_than_the_retention_is_an_invalid_argument(cli_url: str) -> None:
    for hours in ("1", "0", "87601"):
        assert_refuses(
            livechat("admin", "purge-idempotency-keys", "--older-than-hours", hours, database_url=cli_url),
            "INVALID_ARGUMENT",
            "--older-than-hours must be from 24 (idempotency keys are kept at least "
            f"LIVECHAT_IDEMPOTENCY_RETENTION_HOURS=24 hours) to 87600, got {hours}",
        )


# Files on disk: the default database, a missing SQLite file, the local token (no database needed).

DEFAULT_FILE = ".local/livechat.db"
MISSING_MESSAGE = (
    "no database at {path} (DATABASE_URL={url}): run `livechat db upgrade` to create it, "
    "or set DATABASE_URL to the database `make run` or the server uses"
)


def files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def test_commands_on_a_missing_sqlite_file_refuse_without_creating_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    message = MISSING_MESSAGE.format(path=tmp_path / "nothing.db", url=url)
    for args in (
        ("admin", "credit", "--user", "a" * 24, "--coins", "5"),
        ("admin", "audit"),
        ("admin", "settle"),
        ("serve",),
    ):
        assert_refuses(livechat(*args, database_url=url), "DATABASE_MISSING", message)
    assert files_under(tmp_path) == []


def test_every_command_defaults_to_the_database_make_run_creates(tmp_path: Path) -> None:
    message = MISSING_MESSAGE.format(path=DEFAULT_FILE, url=f"sqlite:///{DEFAULT_FILE}")
    assert_refuses(
        livechat("admin", "credit", "--user", "a" * 24, "--coins", "5", database_url=None, cwd=tmp_path),
        "DATABASE_MISSING",
        message,
    )
    assert files_under(tmp_path) == []  # neither ./livechat.db nor .local/livechat.db
    assert_prints(livechat("db", "upgrade", database_url=None, cwd=tmp_path), {"upgraded": "head"})
    user_id = new_id()
    done = livechat(
        "admin",
        "create-user",
        "--username",
        "u",
        "--name",
        "N",
        "--surname",
        "S",
        "--id",
        user_id,
        database_url=None,
        cwd=tmp_path,
    )
    assert_prints(done, user(user_id, "u", "N", "S", "", 0, 0))
    assert files_under(tmp_path) == [".local", DEFAULT_FILE]


def test_dev_token_prints_the_bare_token_for_an_authorization_header(tmp_path: Path) -> None:
    import jwt

    keys = tmp_path / "keys"
    assert_prints(
        livechat("dev", "keygen", "--dir", str(keys), database_url=None),
        {"privateKey": str(keys / "signing-key.pem"), "jwks": str(keys / "jwks.json")},
    )
    done = livechat(
        "dev",
        "token",
        "--sub",
        "64d15f9e2e6c8f4d5a123456",
        "--key",
        str(keys / "signing-key.pem"),
        "--issuer",
        "https://auth.allmine.app",
        "--audience",
        "livestream.allmine.app",
        "--ttl",
        "60",
        database_url=None,
    )
    assert (done.status, done.stderr) == (0, "")
    token = done.stdout.removesuffix("\n")
    assert done.stdout == token + "\n" and token.count(".") == 2 and token.isascii() and " " not in token
    public_key = jwt.PyJWKSet.from_json((keys / "jwks.json").read_text()).keys[0].key
    claims = jwt.decode(
        token, public_key, algorithms=["RS256"], audience="livestream.allmine.app", issuer="https://auth.allmine.app"
    )
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("64d15f9e2e6c8f4d5a123456", 60)
