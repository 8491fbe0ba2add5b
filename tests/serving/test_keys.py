from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import stat

import pytest

from serving.keys import KeyStore, KeyStoreError, Principal


def test_add_returns_key_once_and_stores_only_its_hash(tmp_path):
    store = KeyStore.in_home(tmp_path)
    key_id, full_key = store.add("Worcs Fire", "fire")
    assert full_key.startswith(f"crk_{key_id}_")
    secret = full_key.split("_", 2)[2]
    assert len(secret) == 43  # 32 random bytes, urlsafe base64
    text = store.path.read_text()
    assert secret not in text and full_key not in text
    assert hashlib.sha256(full_key.encode()).hexdigest() in text


def test_key_file_is_private(tmp_path):
    store = KeyStore.in_home(tmp_path)
    store.add("GP A", "gp", practices=["A81001"])
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    store.revoke(store.list()[0].key_id)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_authenticate_returns_principal(tmp_path):
    store = KeyStore.in_home(tmp_path)
    key_id, full_key = store.add("GP A", "gp", practices=["A81001"])
    assert store.authenticate(full_key) == Principal(key_id, "GP A", "gp", frozenset({"A81001"}))
    # a fresh store on the same file (another worker) agrees
    assert KeyStore.in_home(tmp_path).authenticate(full_key) == Principal(
        key_id, "GP A", "gp", frozenset({"A81001"})
    )


def test_comparison_goes_through_compare_digest(tmp_path, monkeypatch):
    store = KeyStore.in_home(tmp_path)
    _, full_key = store.add("GP A", "gp", practices=["A81001"])
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert store.authenticate(full_key) is not None
    digest = hashlib.sha256(full_key.encode()).hexdigest()
    assert calls == [(digest, digest)]
    calls.clear()
    # unknown ids take the same path (against a dummy hash), so timing shows nothing
    assert store.authenticate("crk_000000000000_" + "A" * 43) is None
    assert len(calls) == 1


def test_refusals_carry_a_reason(tmp_path):
    store = KeyStore.in_home(tmp_path)
    key_id, full_key = store.add("GP A", "gp", practices=["A81001"])
    wrong_secret = full_key[:-1] + ("A" if full_key[-1] != "A" else "B")
    assert store.check(wrong_secret).reason == "bad_secret"
    assert store.check("crk_ffffffffffff_" + "A" * 43).reason == "unknown"
    assert store.check("not a key").reason == "malformed"
    assert store.check(full_key).reason == "ok"
    store.revoke(key_id)
    result = store.check(full_key)
    assert result.principal is None and result.reason == "revoked"
    assert store.authenticate(full_key) is None


def test_expired_key_fails_with_its_own_reason(tmp_path):
    store = KeyStore.in_home(tmp_path)
    expiry = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    _, full_key = store.add("Analysts", "analyst", expires_at=expiry)
    before = dt.datetime(2029, 12, 31, 23, 59, tzinfo=dt.UTC)
    assert store.check(full_key, now=before).reason == "ok"
    result = store.check(full_key, now=expiry)
    assert result.principal is None and result.reason == "expired"
    assert store.list()[0].status(expiry) == "expired"


def test_revocation_by_another_process_is_seen(tmp_path):
    serving_side = KeyStore.in_home(tmp_path)
    key_id, full_key = serving_side.add("GP A", "gp", practices=["A81001"])
    assert serving_side.authenticate(full_key) is not None
    KeyStore.in_home(tmp_path).revoke(key_id)  # e.g. `carerisk keys revoke`
    assert serving_side.authenticate(full_key) is None


def test_bad_requests_are_refused(tmp_path):
    store = KeyStore.in_home(tmp_path)
    with pytest.raises(KeyStoreError, match="role 'nurse'"):
        store.add("GP A", "nurse")
    with pytest.raises(KeyStoreError, match="org"):
        store.add("", "gp")
    with pytest.raises(KeyStoreError, match="no key with key_id"):
        store.revoke("abcdefabcdef")
    with pytest.raises(KeyStoreError, match="time zone"):
        store.add("GP A", "gp", practices=["A81001"], expires_at=dt.datetime(2030, 1, 1))


def test_list_never_exposes_hashes(tmp_path):
    store = KeyStore.in_home(tmp_path)
    store.add("GP A", "gp", practices=["A81001"])
    store.add("Fire", "fire")
    rows = [r.public(dt.datetime.now(dt.UTC)) for r in store.list()]
    assert sorted(r["role"] for r in rows) == ["fire", "gp"]
    assert all("key_hash" not in r and r["status"] == "active" for r in rows)


def test_malformed_file_is_a_clear_error(tmp_path):
    store = KeyStore.in_home(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="malformed key file"):
        store.authenticate("crk_ffffffffffff_" + "A" * 43)


def test_unwritable_home_is_a_clear_error(tmp_path):
    blocker = tmp_path / "home"
    blocker.write_text("not a folder")
    with pytest.raises(KeyStoreError, match="cannot write key file"):
        KeyStore.in_home(blocker).add("GP A", "gp", all_practices=True)


def test_a_gp_key_acts_for_its_practices_only(tmp_path):
    store = KeyStore.in_home(tmp_path)
    _, one = store.add("GP A", "gp", practices=["A81001", "A81002"])
    _, every = store.add("GP federation", "gp", all_practices=True)
    _, fire = store.add("Fire", "fire")
    scoped = store.authenticate(one)
    assert scoped is not None and scoped.practices == {"A81001", "A81002"}
    assert scoped.covers("A81002") and not scoped.covers("B82001") and not scoped.covers(None)
    assert scoped.scope == "practices:A81001,A81002"
    federation = store.authenticate(every)
    assert federation is not None and federation.practices is None
    assert federation.covers("B82001") and federation.scope == "all_practices"
    other = store.authenticate(fire)
    assert other is not None and other.practices is None and other.scope is None


def test_a_practice_scope_is_given_to_gp_keys_alone(tmp_path):
    store = KeyStore.in_home(tmp_path)
    with pytest.raises(KeyStoreError, match="--practice"):
        store.add("GP A", "gp")  # no scope
    with pytest.raises(KeyStoreError, match="--all-practices"):
        store.add("GP A", "gp", practices=["A81001"], all_practices=True)  # both
    with pytest.raises(KeyStoreError, match="only a gp key"):
        store.add("Fire", "fire", practices=["A81001"])
    with pytest.raises(KeyStoreError, match="practice code"):
        store.add("GP A", "gp", practices=["A81001; DROP"])
    assert store.list() == []


def test_a_gp_key_stored_without_a_scope_sees_no_practice(tmp_path):
    store = KeyStore.in_home(tmp_path)
    key_id, full_key = store.add("GP A", "gp", practices=["A81001"])
    rows = json.loads(store.path.read_text())
    for row in rows["keys"]:  # as written before keys had scopes
        del row["practices"], row["all_practices"]
    store.path.write_text(json.dumps(rows))
    principal = KeyStore.in_home(tmp_path).authenticate(full_key)
    assert principal == Principal(key_id, "GP A", "gp", frozenset())
    assert not principal.covers("A81001")
