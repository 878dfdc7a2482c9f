"""The CLI forms that scripts drive, run as real subprocesses."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.processes import process_env, run_cli


@pytest.fixture
def cli_env(database_url, tmp_path):
    return process_env(database_url, tmp_path)


def test_users_create_prints_only_the_id(cli_env, database):
    result = run_cli(
        cli_env, "users", "create", "ops@example.com", "--admin", "--password-stdin", stdin="s3cret-pass\n"
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f-]{36}\n", result.stdout)

    duplicate = run_cli(cli_env, "users", "create", "ops@example.com")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr


def test_api_key_create_prints_a_working_key_and_revoke_stops_it(cli_env, database, live_server):
    assert run_cli(cli_env, "users", "create", "ops@example.com").returncode == 0
    created = run_cli(cli_env, "api-keys", "create", "ops@example.com", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"
    assert key.startswith("brl_")

    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{live_server.url}/dynatrace/rca-settings", headers=headers).status_code == 200

    listed = run_cli(cli_env, "api-keys", "list", "ops@example.com")
    key_id = listed.stdout.split("\t")[0]
    revoked = run_cli(cli_env, "api-keys", "revoke", "ops@example.com", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(f"{live_server.url}/dynatrace/rca-settings", headers=headers).status_code == 401


def test_api_key_for_unknown_user_fails_clearly(cli_env, database):
    result = run_cli(cli_env, "api-keys", "create", "ghost@example.com")
    assert result.returncode == 1
    assert "no user with email ghost@example.com" in result.stderr


def test_bad_setting_names_the_variable(cli_env):
    env = dict(cli_env, BOREALIS_DYNATRACE_TIMEOUT="soon")
    result = run_cli(env, "db", "upgrade")
    assert result.returncode == 1
    assert "BOREALIS_DYNATRACE_TIMEOUT" in result.stderr


def test_db_upgrade_is_idempotent(cli_env, database):
    assert run_cli(cli_env, "db", "upgrade").returncode == 0
    assert run_cli(cli_env, "db", "upgrade").returncode == 0


def test_workspaces_are_run_from_the_command_line_and_keys_act_with_the_role(cli_env, database, live_server):
    for email in ("lead@example.com", "oncall@example.com"):
        assert run_cli(cli_env, "users", "create", email).returncode == 0
    created = run_cli(cli_env, "workspaces", "create", "Payments", "--owner", "lead@example.com")
    assert created.returncode == 0, created.stderr
    workspace_id = created.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", workspace_id)

    added = run_cli(cli_env, "workspaces", "add-member", workspace_id, "oncall@example.com", "viewer")
    assert added.returncode == 0, added.stderr
    mine = run_cli(cli_env, "workspaces", "list", "--user", "oncall@example.com").stdout.splitlines()
    assert f"{workspace_id}\tPayments\tviewer" in mine
    everyone = run_cli(cli_env, "workspaces", "list").stdout
    assert f"{workspace_id}\tPayments\t2 member(s)" in everyone

    key = run_cli(
        cli_env, "api-keys", "create", "oncall@example.com", "--workspace", workspace_id
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(f"{live_server.url}/workspaces", headers=headers).json()["items"]
    assert [item["role"] for item in listed if item["current"]] == ["viewer"]
    settings = {"rcaEnabled": True}
    assert (
        httpx.put(f"{live_server.url}/dynatrace/rca-settings", json=settings, headers=headers).status_code
        == 403
    )

    promoted = run_cli(cli_env, "workspaces", "set-role", workspace_id, "oncall@example.com", "owner")
    assert promoted.returncode == 0, promoted.stderr
    assert (
        httpx.put(f"{live_server.url}/dynatrace/rca-settings", json=settings, headers=headers).status_code
        == 200
    )

    unknown_role = run_cli(cli_env, "workspaces", "set-role", workspace_id, "lead@example.com", "nobody")
    assert unknown_role.returncode == 2
    assert "owner" in unknown_role.stderr  # the choices are named
    removed = run_cli(cli_env, "workspaces", "remove-member", workspace_id, "oncall@example.com")
    assert removed.returncode == 0, removed.stderr
    assert httpx.get(f"{live_server.url}/workspaces", headers=headers).status_code == 401
    alone = run_cli(cli_env, "workspaces", "remove-member", workspace_id, "lead@example.com")
    assert alone.returncode == 1
    assert "last owner" in alone.stderr
    elsewhere = run_cli(cli_env, "api-keys", "create", "oncall@example.com", "--workspace", workspace_id)
    assert elsewhere.returncode == 1
    assert "not a member" in elsewhere.stderr
