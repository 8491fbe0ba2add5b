"""The scoring service's settings' defaults and bounds, defined once.

`ServingConfig` (serving/config.py) and the `carerisk serve` options (carerisk/commands/serve.py)
both read them. This module imports only `typing`, so the command line reads it without loading the
service.
"""

from typing import Literal, get_args

MAX_BATCH = 1000  # people per scoring request
MAX_BATCH_LIMIT = 10_000
MAX_BODY_BYTES = 2_000_000
# POST /v1/score/records carries whole feature records (about 3 kB each): its limit is this or
# RECORD_BYTES for each of `max_batch` records, the larger
RECORDS_BODY_BYTES = 5_000_000
RECORD_BYTES = 5_000  # room for one feature record in JSON (about 3 kB with every feature)
MAX_HEAD_BYTES = 32_768  # request line and headers (431)
MAX_HEADERS = 100
RATE_PER_SECOND = 50.0  # requests a second per key, in each worker
BURST = 100  # requests a key may burst to
# failed authentications a client address may make (a second, and at once) before the address
# is refused without its key being checked (serving/request_guard.py)
UNAUTHENTICATED_PER_SECOND = 2.0
UNAUTHENTICATED_BURST = 20
HEADER_TIMEOUT_SECONDS = 10.0
HEADER_TIMEOUT_MAX = 120.0
BODY_TIMEOUT_SECONDS = 20.0  # the whole body must arrive within this
BODY_TIMEOUT_MAX = 25.0  # under BentoML's 30 s request timeout
STALE_AFTER_DAYS = 120  # warn when the snapshot is older than this
TOP_K = 5  # reasons a score carries
REGISTER_MAX = 5000  # people a register may list
# what the fire role may read: only the people referred to it with their agreement, or also the
# ranked register and any person's restricted view (an area with a data-sharing agreement)
FireSharing = Literal["referrals", "register"]
FIRE_SHARING: tuple[FireSharing, ...] = get_args(FireSharing)
FIRE_SHARING_DEFAULT: FireSharing = "referrals"
RELOAD_POLL_SECONDS = 0.0  # 0: reload only when asked (POST /v1/admin/reload)
RELOAD_FOLLOW_SECONDS = 2.0
PORT = 3000
HOST = "127.0.0.1"
WORKERS = 1
WORKERS_MAX = 16
