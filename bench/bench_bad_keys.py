"""What a refused API key costs the service: `KeyStore.check` on keys that do not verify
(malformed, an unknown key id, a wrong secret) and on one that does, in one process.

python -m bench.bench_bad_keys [--keys 50] [--calls 20000]

The gate checks every presented key before it looks at the address's failed authentications,
so that a valid key is served from an address that others flood (serving/request_guard.py). This
shows that a check is cheap enough for that: it prints, for each kind of key, the microseconds a
check takes (median of five runs of `--calls` checks) and the checks a second one core makes,
against a key file of `--keys` keys in a temporary home.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.common import print_json
from serving.keys import KeyStore


def per_call(check: Callable[[], object], calls: int) -> float:
    """Median seconds a call over five runs of `calls` calls."""
    runs = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            check()
        runs.append((time.perf_counter() - began) / calls)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=50, help="keys in the key file")
    parser.add_argument("--calls", type=int, default=20_000, help="checks a run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = KeyStore(Path(folder) / "keys.json")
        keys = [store.add(f"Org {i}", "gp")[1] for i in range(args.keys)]
        valid = keys[0]
        key_id = valid.split("_")[1]
        presented = {
            "malformed": "not-a-key",
            "unknown_id": f"crk_{'0' * 12}_{'A' * 43}",
            "bad_secret": f"crk_{key_id}_{'A' * 43}",
            "valid": valid,
        }
        results = {}
        for kind, text in presented.items():
            seconds = per_call(partial(store.check, text), args.calls)
            results[kind] = {"microseconds": round(seconds * 1e6, 2),
                             "checks_per_second": round(1 / seconds)}  # fmt: skip
    print_json({"keys_in_file": args.keys, "calls_per_run": args.calls, "checks": results})


if __name__ == "__main__":
    main()
