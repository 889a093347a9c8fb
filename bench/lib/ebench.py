#!/usr/bin/env python3
"""One leader-handoff round for bench/election.sh.

Sends SIGNAL to the leader's PID (the only process it signals), then polls
GET /v1/leader on every other agent as fast as it can and prints one JSON
line:

  gap_ms    signal -> the first moment any agent claims leadership under a
            higher term (time with no leader, an upper bound: the old one
            stopped claiming at or after the signal)
  learn_ms  signal -> the moment every other agent, in every region, names
            that new leader and term
  node, term

Bounded by --timeout seconds (then the missing figures are null).
"""
import argparse
import json
import os
import signal
import time
import urllib.request


def leader(api):
    try:
        with urllib.request.urlopen("http://%s/v1/leader" % api, timeout=0.5) as r:
            return json.loads(r.read())
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--signal", required=True, choices=["TERM", "KILL"])
    ap.add_argument("--old-term", type=int, required=True)
    ap.add_argument("--agent", action="append", default=[], help="HOST:PORT of the others")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()

    t0 = time.monotonic()
    os.kill(a.pid, getattr(signal, "SIG" + a.signal))
    gap = learn = None
    node = term = None
    seen = {}
    while time.monotonic() - t0 < a.timeout and learn is None:
        for api in a.agent:
            o = leader(api)
            now = time.monotonic()
            if not o or not o.get("term") or o["term"] <= a.old_term:
                continue
            if o.get("self") and gap is None:
                gap = (now - t0) * 1000
                node, term = o["node"], o["term"]
            if node is not None and o["node"] == node and o["term"] == term:
                seen.setdefault(api, now)
        if node is not None and len(seen) == len(a.agent):
            learn = (max(seen.values()) - t0) * 1000
    print(json.dumps({"gap_ms": gap, "learn_ms": learn, "node": node, "term": term}))


if __name__ == "__main__":
    main()
