from __future__ import annotations

import json
import re
import sqlite3

from typer.testing import CliRunner

from carerisk.cli import app
from serving.audit import AuditEntry, AuditLog
from serving.keys import KeyStore

runner = CliRunner()


def run(tmp_path, *args: str):
    return runner.invoke(app, ["--home", str(tmp_path), *args])


def test_keys_add_prints_the_key_once_and_list_never(tmp_path):
    added = run(tmp_path, "keys", "add", "--org", "Worcs GP", "--role", "gp", "--practice", "M1")
    assert added.exit_code == 0, added.output
    assert "scope:  practices:M1" in added.stdout
    match = re.search(r"crk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", added.stdout)
    assert match is not None
    full_key = match.group(0)
    assert added.output.count(full_key) == 1
    principal = KeyStore.in_home(tmp_path).authenticate(full_key)
    assert principal is not None and principal.role == "gp" and principal.practices == {"M1"}

    listed = run(tmp_path, "keys", "list")
    assert listed.exit_code == 0
    key_id = full_key.split("_")[1]
    assert key_id in listed.stdout and "Worcs GP" in listed.stdout
    assert full_key.split("_", 2)[2] not in listed.output
    as_json = run(tmp_path, "keys", "list", "--json")
    rows = json.loads(as_json.stdout)
    assert rows[0]["key_id"] == key_id and rows[0]["status"] == "active"
    assert "key_hash" not in rows[0]
    assert rows[0]["practices"] == ["M1"] and rows[0]["scope"] == "practices:M1"
    unscoped = run(tmp_path, "keys", "add", "--org", "Worcs GP", "--role", "gp")
    assert unscoped.exit_code == 1 and "--all-practices" in unscoped.output


def test_keys_revoke_and_bad_role(tmp_path):
    added = run(tmp_path, "keys", "add", "--org", "Fire", "--role", "fire", "--expires-days", "30")
    assert "expires:" in added.stdout
    match = re.search(r"key_id: ([0-9a-f]{12})", added.stdout)
    assert match is not None
    key_id = match.group(1)
    revoked = run(tmp_path, "keys", "revoke", key_id)
    assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.stdout
    listed = json.loads(run(tmp_path, "keys", "list", "--json").stdout)
    assert listed[0]["status"] == "revoked"
    assert run(tmp_path, "keys", "revoke", "000000000000").exit_code == 1
    bad = run(tmp_path, "keys", "add", "--org", "X", "--role", "nurse")
    assert bad.exit_code == 1 and "nurse" in bad.output


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        org="GP A",
        key_id="aa471923c21a",
        role="gp",
        endpoint="score",
        outcome="ok",
        person_ids=(f"P{i:07d}",),
        bands=("moderate",),
        status=200,
    )


def test_audit_verify_and_tail(tmp_path):
    log = AuditLog.in_home(tmp_path)
    for i in range(3):
        log.append(_entry(i))
    verified = run(tmp_path, "audit", "verify", "--json")
    assert verified.exit_code == 0
    payload = json.loads(verified.stdout)
    assert payload["ok"] is True and payload["records"] == 3 and payload["head_seq"] == 3
    tail = run(tmp_path, "audit", "tail", "-n", "2")
    assert tail.exit_code == 0
    assert "P0000001" in tail.stdout and "P0000002" in tail.stdout
    assert "P0000000" not in tail.stdout
    tail_json = json.loads(run(tmp_path, "audit", "tail", "--json").stdout)
    assert [r["seq"] for r in tail_json] == [1, 2, 3]


def test_audit_verify_exits_non_zero_on_a_broken_chain(tmp_path):
    log = AuditLog.in_home(tmp_path)
    for i in range(3):
        log.append(_entry(i))
    conn = sqlite3.connect(log.path)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET org = 'someone else' WHERE seq = 2")
    conn.commit()
    conn.close()
    broken = run(tmp_path, "audit", "verify", "--json")
    assert broken.exit_code == 1
    payload = json.loads(broken.stdout)
    assert payload["ok"] is False and payload["first_bad_seq"] == 2
    plain = run(tmp_path, "audit", "verify")
    assert plain.exit_code == 1 and "BROKEN at seq 2" in plain.stdout


def test_serve_refuses_a_remote_host_unless_allowed_behind_a_proxy_or_tls(tmp_path):
    alone = run(tmp_path, "serve", "--host", "0.0.0.0")
    assert alone.exit_code == 1 and "--allow-remote" in alone.output
    allowed = run(tmp_path, "serve", "--host", "192.0.2.10", "--allow-remote")
    assert allowed.exit_code == 1 and "needs --trusted-proxy" in allowed.output
    half_tls = run(tmp_path, "serve", "--host", "0.0.0.0", "--allow-remote", "--tls-certfile", "c")
    assert half_tls.exit_code == 1 and "together" in half_tls.output


def test_the_cds_audience_is_the_address_the_service_starts_on():
    from carerisk.commands.serve import listen_url, remote_problem

    assert listen_url("127.0.0.1", 3000, tls=False) == "http://127.0.0.1:3000"
    assert listen_url("::1", 3000, tls=True) == "https://[::1]:3000"
    assert listen_url("localhost", 8080, tls=False) == "http://localhost:8080"
    assert listen_url("0.0.0.0", 3000, tls=False) == ""  # every address: not known
    assert listen_url("::", 3000, tls=False) == ""
    assert remote_problem("::1", allow_remote=False, proxied=False, tls=False) is None
    assert remote_problem("0.0.0.0", allow_remote=True, proxied=True, tls=False) is None
    assert remote_problem("0.0.0.0", allow_remote=True, proxied=False, tls=True) is None
