"""Schemathesis hooks for tests/schemathesis.rs: a refused request changes nothing.

Before every generated request the hooks read the node's state digest
(`GET /v1/state/digest`, linearizable); after an answer in the 4xx range they read it again,
and the check `refused_requests_change_nothing` fails when it moved. The run must be
sequential (`--workers 1`), or another worker's accepted write could land in between.
At exit the number of refused requests checked is written to $ROSTER_DIGEST_REPORT, so the
test can tell that the check ran.
"""

import atexit
import os
import threading

import requests
import schemathesis

_URL = os.environ["ROSTER_DIGEST_URL"]
_HEADERS = {"Authorization": "Bearer " + os.environ["ROSTER_DIGEST_TOKEN"]}
_CA = os.environ["ROSTER_DIGEST_CA"]
_session = requests.Session()
_local = threading.local()
_checked = set()


def _digest():
    answer = _session.get(_URL, headers=_HEADERS, verify=_CA, timeout=20)
    answer.raise_for_status()
    return answer.json()["digest"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    _local.before = _digest()


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    before = getattr(_local, "before", None)
    if before is None or not 400 <= response.status_code < 500:
        return None
    after = _digest()
    if after != before:
        raise AssertionError(
            f"{case.method} {case.formatted_path} was refused with {response.status_code} "
            f"but the state digest moved from {before} to {after}"
        )
    _checked.add(id(response))
    return None


@atexit.register
def _report():
    path = os.environ.get("ROSTER_DIGEST_REPORT")
    if path:
        with open(path, "w") as f:
            f.write(f"{len(_checked)}\n")
