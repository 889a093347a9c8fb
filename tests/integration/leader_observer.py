#!/usr/bin/env python3
"""An observer of leader election, separate from the agents it watches.

It polls GET /v1/leader on every agent (each answer says whether that
agent claims to lead, "self", under which term, "my_term", and since when,
"since") and, between rounds, the lease row in the database.  At the end it
writes a JSON report and exits 1 if it saw a violation:

  overlap     two agents claimed leadership under different terms during
              intervals that overlap.  An interval runs from the "since" the
              agent reported (its own wall clock; same host, same clock)
              to the moment the observer last asked and was told "I lead"
              (asked, not answered: the answer may come late), so it is
              never longer than the true one: an overlap found is real.
  stale_claim an agent claimed a term lower than the term the database held
              for a valid lease just before (it was deposed and still
              acted).
  backwards   leaderships, ordered by their start, whose terms do not
              strictly increase.

Bounded: it stops at --max-seconds or when --stop-file appears.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request


def wall():
    return time.time()


def parse_since(s):
    return datetime.datetime.strptime(s.replace("Z", "+0000"),
                                      "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def claim(api):
    try:
        with urllib.request.urlopen("http://%s/v1/leader" % api, timeout=0.3) as r:
            o = json.loads(r.read())
    except Exception:
        return None
    if o.get("self") and o.get("my_term"):
        return (o["my_term"], parse_since(o["since"]) if o.get("since") else None)
    return False


def db_row(psql, url, name):
    try:
        out = subprocess.run(
            [psql, "-X", "-At", "-F", "|", "-d", url, "-c",
             "select holder, term, expires_at > now() from meridian_lease "
             "where name = '%s'" % name],
            capture_output=True, text=True, timeout=1).stdout.strip()
    except Exception:
        return None
    if not out:
        return None
    holder, term, valid = out.split("|")
    return (holder, int(term), valid == "t")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", action="append", default=[], help="NAME=HOST:PORT")
    ap.add_argument("--db-url")
    ap.add_argument("--psql", default="psql")
    ap.add_argument("--lease-name", default="meridian")
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    agents = [x.split("=", 1) for x in a.agent]

    intervals = {}          # (node, term) -> [start, last_seen]
    violations = []
    rounds = 0
    db_samples = 0
    t_end = wall() + a.max_seconds
    while wall() < t_end and not os.path.exists(a.stop_file):
        rounds += 1
        row = db_row(a.psql, a.db_url, a.lease_name) if a.db_url and rounds % 5 == 0 else None
        if row:
            db_samples += 1
        for name, api in agents:
            # The claim held at some instant between asking and the answer:
            # the asking time is a lower bound of the leadership's end (the
            # answer's arrival, on a loaded machine, can be well after it).
            asked = wall()
            c = claim(api)
            if not c:
                continue
            now = wall()
            term, since = c
            iv = intervals.setdefault((name, term), [since or asked, asked])
            iv[1] = asked
            if row and row[2] and term < row[1]:
                violations.append({"kind": "stale_claim", "node": name, "term": term,
                                   "db_holder": row[0], "db_term": row[1], "at": now})
        time.sleep(0.01)

    ivs = sorted(((v[0], v[1], k[0], k[1]) for k, v in intervals.items()))
    for i, (s1, e1, n1, t1) in enumerate(ivs):
        for s2, e2, n2, t2 in ivs[i + 1:]:
            if t1 != t2 and s2 < e1:
                violations.append({"kind": "overlap", "a": [n1, t1, s1, e1],
                                   "b": [n2, t2, s2, e2]})
    by_term = {}
    for s, e, n, t in ivs:
        by_term.setdefault(t, set()).add(n)
    for t, nodes in by_term.items():
        if len(nodes) > 1:
            violations.append({"kind": "same_term_two_nodes", "term": t, "nodes": sorted(nodes)})
    terms = [t for _, _, _, t in ivs]
    for x, y in zip(terms, terms[1:]):
        if y <= x:
            violations.append({"kind": "backwards", "terms": [x, y]})
    report = {"rounds": rounds, "db_samples": db_samples, "leaderships": len(ivs),
              "terms": terms, "intervals": ivs, "violations": violations}
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
