#!/usr/bin/python3
"""Helpers for bench/membership.sh: event collection, waits, idle figures, report.

The driver (bash) starts and kills the agents; this file does what bash does
badly: follow many agents' membership views with precise timestamps, wait for a
condition over all of them, and turn the records into tables.

One event format for both systems, one line per membership transition seen by
one agent ("observer"), appended to an events file:

    <unix time, seconds> <observer> <alive|suspect|failed|left|leaving> <member>

Where the times come from:

  meridian  each agent's own log (--log-format json): the "time" field, in
            milliseconds, stamped by the agent when it logs the transition
            ("member NAME (region, addr) joined|suspect|alive|failed|left").
  serf      Serf's agent logs only to the second, so the collector holds one
            RPC connection per agent ("handshake", then "stream" of
            member-join/leave/failed events, then "members" once) and stamps
            each record with time.time() when it arrives.  The stamp is later
            than the transition by Serf's internal event queue plus one
            loopback TCP hop (well under 10 ms unless the machine is starved);
            that error is against Serf, and small next to the figures.
            Members already known when the connection opened are written with
            the time of the "members" reply (an upper bound).

Subcommands (all bounded by --timeout or by the driver's SIGTERM):
  collect       follow agents listed in an agents file (name, addr, log path),
                append events; runs until SIGTERM
  wait-join     until every observer sees every member present; records the time
  wait-marked   until every observer marked one member failed (or left)
  idle          CPU, RSS and UDP bytes of agents over an idle window
  falsefail     count failed/left events for members that were not killed/stopped
  report        Markdown tables from the records file

Records are JSON lines appended to the file given by --record.
Packages: python3 and python3-msgpack (Debian), nftables for `idle`.
"""

import argparse
import datetime
import json
import os
import re
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

POLL_S = 0.05
PRESENT = ("alive", "suspect", "leaving")
SERF_EVENTS = "member-join,member-leave,member-failed"
SERF_KIND = {"member-join": "alive", "member-leave": "left", "member-failed": "failed"}
SERF_STATUS = {"alive": "alive", "leaving": "leaving", "left": "left", "failed": "failed"}
MERIDIAN_MSG = re.compile(r"^member (\S+) \(.*\) (joined|suspect|alive|failed|left)$")
# "EventMemberLeave (forced)": a member first seen failed whose leave intent came later
SERF_LOG = re.compile(r"^\s*(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[INFO\] serf: "
                      r"EventMember(\w+)(?: \(forced\))?: (\S+)")


def die(msg):
    print(f"mbench: {msg}", file=sys.stderr)
    sys.exit(2)


def record(path, rec):
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def tags(spec):
    """"system=serf,profile=lan,n=8" -> dict, n as int."""
    out = {}
    for kv in (spec or "").split(","):
        if kv:
            k, v = kv.split("=", 1)
            out[k] = int(v) if v.isdigit() else v
    return out


def read_agents(path, seen):
    """New lines of the agents file: (name, addr, log); `seen` is a set of names."""
    new = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] not in seen:
                    seen.add(parts[0])
                    new.append((parts[0], parts[1], parts[2]))
    except FileNotFoundError:
        pass
    return new


# --------------------------------------------------------------------------
# collect
# --------------------------------------------------------------------------

class Out:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8", buffering=1)

    def ev(self, t, observer, kind, member):
        self.f.write(f"{t:.6f} {observer} {kind} {member}\n")


class LogFollower:
    """Follows one agent's log from its beginning; parses complete lines."""

    def __init__(self, system, name, path):
        self.system, self.name, self.path, self.pos, self.buf = system, name, path, 0, b""

    def poll(self, out):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read(1 << 22)
        except FileNotFoundError:
            return
        now = time.time()  # after the read: no line read was written later than this
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if self.system == "meridian":
                self.meridian_line(line, out)
            else:
                self.serf_line(line, now, out)

    def meridian_line(self, line, out):
        try:
            j = json.loads(line)
        except ValueError:
            return
        m = MERIDIAN_MSG.match(j.get("message", ""))
        if not m or "time" not in j:
            return
        ts = datetime.datetime.strptime(j["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        t = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
        kind = "alive" if m.group(2) == "joined" else m.group(2)
        out.ev(t, self.name, kind, m.group(1))

    def serf_line(self, line, now, out):
        m = SERF_LOG.match(line.decode("utf-8", "replace"))
        if not m:
            return
        kind = {"Join": "alive", "Leave": "left", "Failed": "failed"}.get(m.group(2))
        if not kind or m.group(3) == self.name:
            return
        # the line says the second; we saw it at `now` (inotify wakes us at once)
        t = now
        try:
            sec = time.mktime(time.strptime(m.group(1), "%Y/%m/%d %H:%M:%S"))
            t = min(now, sec + 1.0)
        except ValueError:
            pass
        out.ev(t, self.name, kind, m.group(3))


class Inotify:
    """IN_MODIFY on one directory, through libc (python3 has no inotify module)."""

    def __init__(self, directory):
        import ctypes
        import ctypes.util
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            die(f"inotify_init1: errno {ctypes.get_errno()}")
        if self.libc.inotify_add_watch(self.fd, directory.encode(), 0x2 | 0x100) < 0:
            die(f"inotify_add_watch {directory}: errno {ctypes.get_errno()}")

    def names(self):
        """Names of the files modified since the last call; None after an overflow."""
        out = set()
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            i = 0
            while i + 16 <= len(data):
                _, mask, _, ln = struct.unpack_from("iIII", data, i)
                if mask & 0x4000:  # IN_Q_OVERFLOW
                    return None
                out.add(data[i + 16:i + 16 + ln].rstrip(b"\0").decode())
                i += 16 + ln


class SerfConn:
    """One RPC session: handshake (seq 1), stream (seq 2), members (seq 3)."""

    def __init__(self, name, addr):
        import msgpack  # Debian python3-msgpack
        self.msgpack = msgpack
        self.name, self.addr = name, addr
        self.sock = None
        self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        self.stream_acked = False
        self.want_body = None
        self.closed = False

    def connect(self):
        host, port = self.addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.2)
        try:
            s.connect((host, int(port)))
        except OSError:
            s.close()
            return False
        p = self.msgpack.Packer(use_bin_type=False)
        msg = (p.pack({"Command": "handshake", "Seq": 1}) + p.pack({"Version": 1}) +
               p.pack({"Command": "stream", "Seq": 2}) + p.pack({"Type": SERF_EVENTS}) +
               p.pack({"Command": "members", "Seq": 3}))
        s.sendall(msg)
        s.setblocking(False)
        self.sock = s
        return True

    def readable(self, out):
        t = time.time()
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self.unpacker.feed(data)
        for obj in self.unpacker:
            self.handle(obj, t, out)

    def handle(self, obj, t, out):
        if self.want_body is None:
            seq, err = obj.get("Seq"), obj.get("Error", "")
            if err:
                print(f"mbench: serf {self.name} seq {seq}: {err}", file=sys.stderr)
                return
            if seq == 2 and not self.stream_acked:
                self.stream_acked = True
            elif seq in (2, 3):
                self.want_body = seq
            return
        seq, self.want_body = self.want_body, None
        if seq == 2:
            kind = SERF_KIND.get(obj.get("Event"))
            for m in obj.get("Members") or []:
                if kind and m.get("Name") != self.name:
                    out.ev(t, self.name, kind, m.get("Name"))
        else:
            for m in obj.get("Members") or []:
                kind = SERF_STATUS.get(m.get("Status"))
                if kind and m.get("Name") != self.name:
                    out.ev(t, self.name, kind, m.get("Name"))


def cmd_collect(a):
    out = Out(a.events)
    rpc_out = Out(a.rpc_events) if a.rpc_events else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    names, followers, pending = set(), {}, []
    ino = Inotify(a.logdir)
    sel = selectors.DefaultSelector()
    sel.register(ino.fd, selectors.EVENT_READ, None)
    while not stop:
        for name, addr, log in read_agents(a.agents, names):
            f = followers[os.path.basename(log)] = LogFollower(a.system, name, log)
            f.poll(out)  # what it wrote before we knew of it: its inotify events are gone
            if rpc_out:
                pending.append((time.monotonic() + a.connect_timeout, SerfConn(name, addr)))
        still = []
        for deadline, c in pending:
            if c.connect():
                sel.register(c.sock, selectors.EVENT_READ, c)
            elif time.monotonic() < deadline:
                still.append((deadline, c))
            else:
                print(f"mbench: serf {c.name}: no RPC at {c.addr}", file=sys.stderr)
        pending = still
        for key, _ in sel.select(timeout=0.02 if pending else 0.25):
            c = key.data
            if c is None:
                changed = ino.names()
                for base, f in followers.items():
                    if changed is None or base in changed:
                        f.poll(out)
                continue
            c.readable(rpc_out)
            if c.closed:
                sel.unregister(c.sock)
                c.sock.close()
    for f in followers.values():  # a last look
        f.poll(out)
    out.f.close()
    if rpc_out:
        rpc_out.f.close()


# --------------------------------------------------------------------------
# waits over the events file
# --------------------------------------------------------------------------

class View:
    """Each observer's latest view, fed from the events file as it grows."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, ""
        self.state = {}      # observer -> member -> kind
        self.present = {}    # observer -> member -> time it last became present
        self.events = []     # (t, observer, kind, member)

    def poll(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            p = line.split()
            if len(p) != 4:
                continue
            t, obs, kind, mem = float(p[0]), p[1], p[2], p[3]
            self.events.append((t, obs, kind, mem))
            st = self.state.setdefault(obs, {})
            was = st.get(mem) in PRESENT
            st[mem] = kind
            if kind in PRESENT and not was:
                self.present.setdefault(obs, {})[mem] = t


def names_arg(s):
    return [x for x in s.split(",") if x]


def cmd_wait_join(a):
    obs, mem = names_arg(a.observers), names_arg(a.members)
    v = View(a.events)
    end = time.monotonic() + a.timeout
    while True:
        v.poll()
        missing = {}
        for o in obs:
            st = v.state.get(o, {})
            miss = [m for m in mem if m != o and st.get(m) not in PRESENT]
            if miss:
                missing[o] = miss
        if not missing:
            t = max([v.present[o][m] for o in obs for m in mem if m != o] or [a.t0])
            rec = dict(tags(a.tags), kind=a.kind, seconds=round(t - a.t0, 4))
            record(a.record, rec)
            print(f"{t - a.t0:.3f}")
            return 0
        if time.monotonic() > end:
            worst = sorted(missing.items(), key=lambda kv: -len(kv[1]))[:3]
            print(f"mbench: join: {len(missing)} of {len(obs)} observers incomplete after "
                  f"{a.timeout}s, e.g. " +
                  "; ".join(f"{o} misses {len(m)} ({','.join(m[:4])})" for o, m in worst),
                  file=sys.stderr)
            rec = dict(tags(a.tags), kind=a.kind, seconds=None, incomplete=len(missing),
                       missing={o: m[:8] for o, m in worst})
            record(a.record, rec)
            return 1
        time.sleep(POLL_S * 2)


def cmd_wait_marked(a):
    obs = [o for o in names_arg(a.observers) if o != a.member]
    v = View(a.events)
    end = time.monotonic() + a.timeout
    first = {}
    other = {}
    while True:
        v.poll()
        for t, o, kind, m in v.events:
            if m != a.member or t < a.since - 0.5 or o in first:
                continue
            if kind == a.status:
                first[o] = t
            elif kind in ("failed", "left"):
                other.setdefault(o, kind)
        v.events.clear()
        done = all(o in first for o in obs)
        if done or time.monotonic() > end:
            times = sorted(first[o] - a.since for o in obs if o in first)
            rec = dict(tags(a.tags), kind=a.kind, victim=a.member, expected=len(obs),
                       since=a.since, observers=obs,
                       marked=len(times), wrong_status=len(other),
                       first=round(times[0], 4) if times else None,
                       last=round(times[-1], 4) if done else None,
                       median=round(statistics.median(times), 4) if times else None)
            record(a.record, rec)
            if done:
                print(f"{times[0]:.3f} {times[-1]:.3f}")
                return 0
            print(f"mbench: {a.kind} {a.member}: {len(times)} of {len(obs)} marked it "
                  f"{a.status} within {a.timeout}s"
                  + (f"; {len(other)} marked it {sorted(set(other.values()))}" if other else ""),
                  file=sys.stderr)
            return 1
        time.sleep(POLL_S)


def cmd_stream_delay(a):
    """The same kill/leave trials, timed by Serf's RPC event stream instead."""
    want = tags(a.tags)
    trials = []
    with open(a.records, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") in ("kill", "leave") and all(r.get(k) == v for k, v in want.items()):
                trials.append(r)
    v = View(a.events)
    v.poll()
    for r in trials:
        status = "failed" if r["kind"] == "kill" else "left"
        first = {}
        for t, o, kind, m in v.events:
            if m == r["victim"] and kind == status and t >= r["since"] - 0.5 and o not in first:
                first[o] = t - r["since"]
        times = sorted(first[o] for o in r["observers"] if o in first)
        done = len(times) == len(r["observers"])
        record(a.record, dict(want, kind=r["kind"] + "_stream", trial=r.get("trial"),
                              victim=r["victim"], marked=len(times),
                              first=round(times[0], 4) if times else None,
                              last=round(times[-1], 4) if done else None))
    return 0


def cmd_falsefail(a):
    killed, stopped = set(names_arg(a.killed)), set(names_arg(a.stopped))
    v = View(a.events)
    v.poll()
    bad_fail, bad_left, susp, stop_fail = [], [], 0, []
    for t, o, kind, m in v.events:
        if kind == "failed" and m in stopped:
            stop_fail.append((t, o, m))
        elif kind == "failed" and m not in killed:
            bad_fail.append((t, o, m))
        if kind == "left" and m not in stopped:
            bad_left.append((t, o, m))
        if kind == "suspect" and m not in killed:
            susp += 1
    rec = dict(tags(a.tags), kind="falsefail", false_failed=len(bad_fail),
               false_left=len(bad_left), false_suspect=susp, stopped_failed=len(stop_fail),
               examples=[f"{t:.3f} {o} marked {m} failed" for t, o, m in bad_fail[:5]],
               stopped_examples=[f"{t:.3f} {o} marked {m} failed" for t, o, m in stop_fail[:5]])
    record(a.record, rec)
    print(f"false failed {len(bad_fail)}, false left {len(bad_left)}, "
          f"stopped marked failed {len(stop_fail)}, "
          f"suspect of live members {susp}")
    return 0


# --------------------------------------------------------------------------
# idle
# --------------------------------------------------------------------------

def proc_sample(pid):
    """(utime+stime ticks, VmRSS KiB) of a process (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return ticks, rss


def sched_ns(pid):
    """(sum of on-CPU ns over the process's threads, their ids) from schedstat."""
    total, tids = 0, []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
            tids.append(tid)
        except (OSError, ValueError):
            pass
    return total, sorted(tids)


def nft_counters(table):
    """udp sport -> (packets, bytes) from the driver's nftables table."""
    out = subprocess.run(["nft", "-j", "list", "table", "inet", table], check=True,
                         capture_output=True, text=True).stdout
    res = {}
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        port, cnt = None, None
        for e in rule["expr"]:
            if "match" in e and e["match"]["left"].get("payload", {}).get("field") == "sport":
                port = e["match"]["right"]
            if "counter" in e:
                cnt = (e["counter"]["packets"], e["counter"]["bytes"])
        if port is not None and cnt is not None:
            res[port] = cnt
    return res


def meridian_udp_out(api):
    try:
        with urllib.request.urlopen(f"http://{api}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('meridian_gossip_bytes_total{direction="out",proto="udp"}'):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def cmd_idle(a):
    pids = [int(x) for x in names_arg(a.pids)]
    ports = [int(x) for x in names_arg(a.ports)]
    apis = names_arg(a.apis)
    hz = os.sysconf("SC_CLK_TCK")
    c0 = nft_counters(a.nft_table)
    m0 = [meridian_udp_out(x) for x in apis]
    t0 = time.monotonic()
    s0 = [proc_sample(p) for p in pids]
    n0 = [sched_ns(p) for p in pids]
    time.sleep(a.seconds)
    s1 = [proc_sample(p) for p in pids]
    n1 = [sched_ns(p) for p in pids]
    dt = time.monotonic() - t0
    c1 = nft_counters(a.nft_table)
    m1 = [meridian_udp_out(x) for x in apis]
    cpu = [(b[0] - x[0]) / hz * 60.0 / dt for x, b in zip(s0, s1)]
    rss = [b[1] / 1024.0 for b in s1]
    # precise cross-check, valid when no thread came or went during the window
    sched = [(y[0] - x[0]) / 1e9 * 60.0 / dt if x[1] == y[1] else None for x, y in zip(n0, n1)]
    udp, pps = [], []
    for p in ports:
        (p0, b0), (p1, b1) = c0.get(p, (0, 0)), c1.get(p, (0, 0))
        # nftables counts from the IP header on: take off IPv4 (20) + UDP (8)
        udp.append(((b1 - b0) - 28 * (p1 - p0)) / dt)
        pps.append((p1 - p0) / dt)
    rec = dict(tags(a.tags), kind="idle", seconds=round(dt, 2), tick_s=1.0 / hz,
               cpu_s_per_min=[round(x, 4) for x in cpu],
               cpu_sched_s_per_min=[None if x is None else round(x, 5) for x in sched],
               rss_mib=[round(x, 3) for x in rss],
               udp_payload_Bps=[round(x, 1) for x in udp], udp_pps=[round(x, 2) for x in pps])
    if apis and all(x is not None for x in m0 + m1):
        rec["metrics_udp_out_Bps"] = [round((y - x) / dt, 1) for x, y in zip(m0, m1)]
    record(a.record, rec)
    print(f"cpu s/min median {statistics.median(cpu):.4f} mean {statistics.mean(cpu):.4f}; "
          f"rss MiB median {statistics.median(rss):.2f}; "
          f"udp B/s median {statistics.median(udp):.1f}")
    return 0


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mx(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def p99(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def fmt(x, digits=2):
    if x is None:
        return "n/m"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def ratio(m, s):
    if m is None or s is None or s == 0:
        return "n/m"
    return f"{m / s:.2f}"


def figures(recs, system, profile, n):
    """figure name -> (median, max, count, unit) for one configuration."""
    rs = [r for r in recs if r.get("system") == system and r.get("profile") == profile
          and r.get("n") == n]
    f = {}
    join = [r["seconds"] for r in rs if r["kind"] == "join"]
    if join:
        f["join_all"] = (med(join), mx(join) if None not in join else None, len(join))
        f["join_incomplete"] = (sum(1 for x in join if x is None), None, len(join))
    kills = [r for r in rs if r["kind"] == "kill"]
    if kills:
        f["kill_first"] = (med([r["first"] for r in kills]), mx([r["first"] for r in kills]),
                           len(kills))
        last = [r["last"] for r in kills]
        f["kill_last"] = (med(last), mx(last) if None not in last else None, len(kills))
        f["kill_incomplete"] = (sum(1 for x in last if x is None), None, len(kills))
    leaves = [r for r in rs if r["kind"] == "leave"]
    if leaves:
        last = [r["last"] for r in leaves]
        f["leave_last"] = (med(last), mx(last) if None not in last else None, len(leaves))
        f["leave_first"] = (med([r["first"] for r in leaves]), mx([r["first"] for r in leaves]),
                            len(leaves))
        f["leave_wrong"] = (sum(r.get("wrong_status", 0) for r in leaves), None, len(leaves))
    idle = [r for r in rs if r["kind"] == "idle"]
    if idle:
        i = idle[-1]
        f["rss"] = (med(i["rss_mib"]), p99(i["rss_mib"]), len(i["rss_mib"]))
        f["cpu"] = (med(i["cpu_s_per_min"]), p99(i["cpu_s_per_min"]), len(i["cpu_s_per_min"]))
        f["cpu_mean"] = (statistics.mean(i["cpu_s_per_min"]), None, len(i["cpu_s_per_min"]))
        f["udp"] = (med(i["udp_payload_Bps"]), p99(i["udp_payload_Bps"]),
                    len(i["udp_payload_Bps"]))
        f["pps"] = (med(i["udp_pps"]), p99(i["udp_pps"]), len(i["udp_pps"]))
        if "metrics_udp_out_Bps" in i:
            f["udp_metrics"] = (med(i["metrics_udp_out_Bps"]), p99(i["metrics_udp_out_Bps"]),
                                len(i["metrics_udp_out_Bps"]))
    for kind in ("kill", "leave"):
        st = [r for r in rs if r["kind"] == kind + "_stream"]
        if st:
            last = [r["last"] for r in st]
            f[kind + "_last_stream"] = (med(last), mx(last) if None not in last else None,
                                        len(st))
    if idle and any(x is not None for x in idle[-1].get("cpu_sched_s_per_min", [])):
        xs = [x for x in idle[-1]["cpu_sched_s_per_min"] if x is not None]
        f["cpu_sched"] = (med(xs), p99(xs), len(xs))
        f["cpu_sched_mean"] = (statistics.mean(xs), None, len(xs))
    ff = [r for r in rs if r["kind"] == "falsefail"]
    if ff:
        f["false_failed"] = (sum(r["false_failed"] for r in ff), None, len(ff))
        f["false_left"] = (sum(r["false_left"] for r in ff), None, len(ff))
        f["false_suspect"] = (sum(r["false_suspect"] for r in ff), None, len(ff))
        f["stopped_failed"] = (sum(r.get("stopped_failed", 0) for r in ff), None, len(ff))
    rj = [r["seconds"] for r in rs if r["kind"] == "rejoin"]
    if rj:
        f["rejoin"] = (med(rj), mx(rj) if None not in rj else None, len(rj))
    return f


ROWS = [
    ("join_all", "all joined (s), start of first agent to all see N", "med", "max"),
    ("rejoin", "a new agent joins: all see it, and it sees all (s)", "med", "max"),
    ("kill_first", "kill -9: first marks failed (s)", "med", "max"),
    ("kill_last", "kill -9: last marks failed (s)", "med", "max"),
    ("leave_first", "SIGTERM: first marks left (s)", "med", "max"),
    ("leave_last", "SIGTERM: all mark left (s)", "med", "max"),
    ("kill_last_stream", "kill -9: last delivers member-failed on its RPC stream (s)",
     "med", "max"),
    ("leave_last_stream", "SIGTERM: last delivers member-leave on its RPC stream (s)",
     "med", "max"),
    ("rss", "RSS per agent (MiB)", "med", "p99"),
    ("cpu", "idle CPU per agent (s/min)", "med", "p99"),
    ("cpu_mean", "idle CPU, mean over agents (s/min)", "mean", ""),
    ("cpu_sched", "idle CPU per agent, from schedstat ns (s/min)", "med", "p99"),
    ("cpu_sched_mean", "idle CPU from schedstat, mean over agents (s/min)", "mean", ""),
    ("udp", "idle UDP payload sent per agent (B/s)", "med", "p99"),
    ("pps", "idle UDP packets sent per agent (/s)", "med", "p99"),
]


def cmd_report(a):
    recs = []
    with open(a.records, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    profiles = sorted({r["profile"] for r in recs}, key=["lan", "local", "wan"].index)
    ns = sorted({r["n"] for r in recs})
    out = []
    for prof in profiles:
        for n in ns:
            s = figures(recs, "serf", prof, n)
            m = figures(recs, "meridian", prof, n)
            if not s and not m:
                continue
            ntr = max([v[2] for k, v in list(s.items()) + list(m.items())
                       if k.startswith("kill")] or [0])
            out.append(f"\n### profile `{prof}`, N = {n} ({ntr} kill trials)\n")
            out.append("| figure | Serf med | Serf max/p99 | Meridian med | Meridian max/p99 "
                       "| Meridian/Serf (med) |")
            out.append("|---|---:|---:|---:|---:|---:|")
            for key, label, _, _ in ROWS:
                if key not in s and key not in m:
                    continue
                sv, mv = s.get(key, (None, None, 0)), m.get(key, (None, None, 0))
                d = 3 if key.startswith("cpu") or key.startswith("leave") else 2
                out.append(f"| {label} | {fmt(sv[0], d)} | {fmt(sv[1], d)} | {fmt(mv[0], d)} | "
                           f"{fmt(mv[1], d)} | {ratio(mv[0], sv[0])} |")
            for key, label in (("join_incomplete", "start-ups not converged within the timeout"),
                               ("kill_incomplete", "kill trials where not all marked it failed"),
                               ("stopped_failed", "marks of a SIGTERM-stopped agent as failed"),
                               ("false_failed", "false failures (live member marked failed)"),
                               ("false_left", "live member marked left"),
                               ("false_suspect", "suspicions of live members (Meridian only)")):
                if key in s or key in m:
                    sv = s.get(key, (None,))[0] if key != "false_suspect" else None
                    mv = m.get(key, (None,))[0]
                    out.append(f"| {label} | {fmt(sv, 0)} | | {fmt(mv, 0)} | | |")
            if "udp_metrics" in m:
                mv = m["udp_metrics"]
                out.append(f"| Meridian's own /metrics UDP bytes out (B/s), cross-check | | | "
                           f"{fmt(mv[0])} | {fmt(mv[1])} | |")
    # targets (issue 2), at N = 32 lan, and flatness N=8 -> N=128
    out.append("\n### targets (issue 2)\n")
    out.append("| target | measured | met? |")
    out.append("|---|---|---|")

    def verdict(ok):
        return "n/m" if ok is None else ("yes" if ok else "**no**")

    s = figures(recs, "serf", "lan", 32)
    m = figures(recs, "meridian", "lan", 32)

    def g(f, k, i=0):
        return f.get(k, (None, None, 0))[i]

    for key, label in (("kill_last", "N=32 lan: all mark killed agent failed <= 0.8x Serf"),
                       ("kill_first", "N=32 lan: first marks killed agent failed <= 0.8x Serf")):
        mv, sv = g(m, key), g(s, key)
        ok = None if mv is None or sv is None else mv <= 0.8 * sv
        out.append(f"| {label} | {fmt(mv)} s vs {fmt(sv)} s ({ratio(mv, sv)}x) | {verdict(ok)} |")
    mv, mmax = g(m, "leave_last"), g(m, "leave_last", 1)
    out.append(f"| N=32 lan: leave seen by all within 0.1 s | median {fmt(mv, 3)} s, max "
               f"{fmt(mmax, 3)} s | {verdict(None if mmax is None else mmax <= 0.1)} |")
    mv = g(m, "rss")
    out.append(f"| N=32 lan: RSS <= 4 MiB | median {fmt(mv)}, p99 {fmt(g(m, 'rss', 1))} MiB | "
               f"{verdict(None if mv is None else g(m, 'rss', 1) <= 4.0)} |")
    ck = "cpu_sched" if "cpu_sched" in m else "cpu"
    mv = g(m, ck + "_mean")
    src = "schedstat" if ck == "cpu_sched" else "ticks"
    out.append(f"| N=32 lan: idle CPU <= 0.03 s/min ({src}) | mean {fmt(mv, 3)}, median "
               f"{fmt(g(m, ck), 3)}, p99 {fmt(g(m, ck, 1), 3)} s/min | "
               f"{verdict(None if mv is None else mv <= 0.03)} |")
    mv, sv = g(m, "udp"), g(s, "udp")
    out.append(f"| N=32 lan: UDP B/s <= Serf's | {fmt(mv)} vs {fmt(sv)} B/s "
               f"({ratio(mv, sv)}x) | {verdict(None if mv is None or sv is None else mv <= sv)} |")
    ff = g(m, "false_failed")
    out.append(f"| no false failures (this benchmark; the loss and starved-node cases are in "
               f"the simulation tests) | {fmt(ff, 0)} | "
               f"{verdict(None if ff is None else ff == 0)} |")
    for prof in profiles:
        for sysname in ("meridian", "serf"):
            lo, hi = figures(recs, sysname, prof, min(ns)), figures(recs, sysname, prof, max(ns))
            if not lo or not hi or min(ns) == max(ns):
                continue
            cells = []
            oks = []
            for key, label in (("rss", "RSS"), ("cpu_sched_mean", "CPU"), ("udp", "B/s")):
                if key not in lo or key not in hi:
                    key = "cpu_mean" if key == "cpu_sched_mean" else key
                a0, a1 = g(lo, key), g(hi, key)
                r = None if a0 in (None, 0) or a1 is None else a1 / a0
                cells.append(f"{label} x{fmt(r)}")
                oks.append(None if r is None else 0.8 <= r <= 1.2)
            ok = None if None in oks else all(oks)
            tgt = " (target)" if sysname == "meridian" else " (for reference)"
            out.append(f"| {sysname} {prof}: flat within 20% from N={min(ns)} to N={max(ns)}"
                       f"{tgt} | {', '.join(cells)} | {verdict(ok)} |")
    print("\n".join(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("collect")
    p.add_argument("--system", choices=("serf", "meridian"), required=True)
    p.add_argument("--agents", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--logdir", required=True)
    p.add_argument("--rpc-events", help="serf: also the RPC stream's events, here")
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p = sub.add_parser("wait-join")
    p.add_argument("--events", required=True)
    p.add_argument("--observers", required=True)
    p.add_argument("--members", required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--kind", default="join")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--record")
    p.add_argument("--tags")
    p = sub.add_parser("wait-marked")
    p.add_argument("--events", required=True)
    p.add_argument("--observers", required=True)
    p.add_argument("--member", required=True)
    p.add_argument("--status", choices=("failed", "left"), required=True)
    p.add_argument("--kind", required=True)
    p.add_argument("--since", type=float, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--record")
    p.add_argument("--tags")
    p = sub.add_parser("stream-delay")
    p.add_argument("--events", required=True)
    p.add_argument("--records", required=True)
    p.add_argument("--record")
    p.add_argument("--tags")
    p = sub.add_parser("falsefail")
    p.add_argument("--events", required=True)
    p.add_argument("--killed", default="")
    p.add_argument("--stopped", default="")
    p.add_argument("--record")
    p.add_argument("--tags")
    p = sub.add_parser("idle")
    p.add_argument("--pids", required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--apis", default="")
    p.add_argument("--nft-table", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--record")
    p.add_argument("--tags")
    p = sub.add_parser("report")
    p.add_argument("--records", required=True)
    a = ap.parse_args()
    return {"collect": cmd_collect, "wait-join": cmd_wait_join, "wait-marked": cmd_wait_marked,
            "falsefail": cmd_falsefail,
            "stream-delay": cmd_stream_delay, "idle": cmd_idle, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
