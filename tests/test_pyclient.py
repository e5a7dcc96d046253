#!/usr/bin/python3
"""The Python client package (src/python/procreg) against the real daemon.

Starts procregd on a private socket and runs every protocol method through
the synchronous and the asyncio clients; checks that errors map to their
exception classes, that a monitor sees a kill -9 of a child holding a
name, that auto-reconnect restores names (with options and values), groups
and monitors across a daemon restart, 1,000 concurrent asyncio calls, the
serve decorator, hold as a context manager, subscriptions with since, the
room example, and that a fake daemon sending garbage, nothing, or an
oversized declared length never hangs the client.  Every wait is bounded;
nothing is timed."""
import asyncio
import os
import pydoc
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYSRC = os.path.join(HERE, "..", "src", "python")
sys.path.insert(0, PYSRC)
import procreg  # noqa: E402
import procreg.aio  # noqa: E402
from procreg import errors  # noqa: E402

DAEMON = os.environ.get("PROCREGD", os.path.join(HERE, "..", "procregd"))
WAIT = 10.0
results = {"passed": 0, "failed": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what, flush=True)
    return cond


def eventually(pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    except Exception as e:  # the wrong one
        print("       (raised %r)" % (e,))
        return None
    return None


class Daemon:
    def __init__(self, path):
        self.path = path
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([DAEMON, "-s", self.path],
                                     stderr=subprocess.DEVNULL)

        def accepting():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.path)
                return True
            except OSError:
                return False
            finally:
                s.close()
        return eventually(accepting)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return None


def sync_methods(path):
    a = procreg.connect(path, label="py-a")
    b = procreg.connect(path, timeout=5)
    check("hello: server, protocol 2, our conn id",
          a.server.server == "procreg" and a.server.protocol == 2
          and a.conn > 0 and a.hello("again").conn == a.conn)
    e = a.register("svc/a", {"port": 1})
    check("register returns an Entry dataclass", isinstance(e, procreg.Entry)
          and e.value == {"port": 1} and e.pid == os.getpid())
    check("whereis finds it, and None for a free name",
          b.whereis("svc/a") == e and b.whereis("svc/none") is None)
    check("register: Taken", raises(procreg.Taken, b.register, "svc/a")
          is not None)
    check("register: BadRequest for an empty name",
          raises(procreg.BadRequest, a.register, "") is not None)
    check("unregister: NotOwner", raises(procreg.NotOwner, b.unregister,
                                         "svc/a") is not None)
    check("unregister: Stale with another gen",
          raises(procreg.Stale, a.unregister, "svc/a", e.gen + 99) is not None)
    check("unregister: NotFound", raises(procreg.NotFound, a.unregister,
                                         "svc/none") is not None)
    check("send is accepted", b.send("svc/a", [1, "two"]) is True)
    ev = a.next_event(WAIT)
    check("the owner gets a Message", isinstance(ev, procreg.Message)
          and ev.target == "svc/a" and ev.sender == b.conn
          and ev.payload == [1, "two"])
    check("send with a stale gen: Stale",
          raises(procreg.Stale, b.send, "svc/a", 1, e.gen + 1) is not None)
    b.send(a.conn, "by conn")
    ev = a.next_event(WAIT)
    check("send to a connection id", isinstance(ev, procreg.Message)
          and ev.target == a.conn and ev.payload == "by conn")
    u = a.update("svc/a", "v2", e.gen)
    check("update keeps since and gen", u.value == "v2" and u.gen == e.gen
          and u.since == e.since)
    check("unregister with the right gen", a.unregister("svc/a", e.gen))
    # Monitors.
    e = a.register("svc/m")
    ref = b.monitor("svc/m")
    ref2 = b.monitor("svc/m")
    check("demonitor: True, then False", b.demonitor(ref2) is True
          and b.demonitor(ref2) is False)
    a.unregister("svc/m")
    ev = b.next_event(WAIT)
    check("down: unregistered", isinstance(ev, procreg.Down)
          and ev.ref == ref and ev.reason == "unregistered")
    ref = b.monitor("svc/ghost")
    ev = b.next_event(WAIT)
    check("down: noproc at once", ev == procreg.Down(ref, "svc/ghost",
                                                     "noproc"))
    # await, queue, replacement.
    check("await_name 0 on a free name: CallTimeout",
          raises(procreg.CallTimeout, b.await_name, "svc/later", 0)
          is not None)
    a.register("svc/later", 7)
    check("await_name of a registered name: its entry",
          b.await_name("svc/later", 1).value == 7)
    q = b.register("svc/later", "b", queue=True)
    check("register queue=True: Queued(position 1)", q ==
          procreg.Queued("svc/later", 1) and a.queue("svc/later") == [b.conn])
    a.unregister("svc/later")
    ev = b.next_event(WAIT)
    check("the waiter gets Acquired with its value",
          isinstance(ev, procreg.Acquired) and ev.entry.conn == b.conn
          and ev.entry.value == "b")
    b.register("svc/prim", "b", allow_replacement=True)
    ne = a.register("svc/prim", "a", replace=True)
    ev = b.next_event(WAIT)
    check("replace takes it; the old owner gets Lost(replaced)",
          ne.conn == a.conn and ev == procreg.Lost("svc/prim", "replaced"))
    # Groups.
    m = a.join("grp/x", "alice")
    check("join: a Member", isinstance(m, procreg.Member)
          and m.group == "grp/x" and m.value == "alice")
    b.join("grp/x")
    check("join twice: Taken", raises(procreg.Taken, b.join, "grp/x")
          is not None)
    check("members in join order", [x.conn for x in a.members("grp/x")]
          == [a.conn, b.conn])
    r = a.publish("grp/x", "hi", echo=False)
    ev = b.next_event(WAIT)
    check("publish: delivered 1 without echo, the member gets Publish",
          r.delivered == 1 and r.busy == [] and ev ==
          procreg.Publish("grp/x", a.conn, "hi") and a.next_event(0) is None)
    check("keys of a connection", a.keys(a.conn) ==
          procreg.Keys(["svc/prim"], ["grp/x"]))
    check("leave, then NotFound", b.leave("grp/x") and
          raises(procreg.NotFound, b.leave, "grp/x") is not None)
    # register_many and list.
    ents = a.register_many([("many/1", 1), "many/2", ["many/3", None],
                            "many/4", "many/5"])
    check("register_many: entries in order", [x.name for x in ents] ==
          ["many/%d" % i for i in range(1, 6)] and ents[0].value == 1)
    check("register_many is all or none: Taken, nothing registered",
          raises(procreg.Taken, b.register_many, ["many/6", "many/1"])
          is not None and b.whereis("many/6") is None)
    listed = list(b.list("many/", page_size=2))
    check("list pages through every match (pages of 2)",
          [x.name for x in listed] == ["many/%d" % i for i in range(1, 6)])
    st = a.stats()
    check("stats: a Stats dataclass", isinstance(st, procreg.Stats)
          and st.connections >= 2 and st.names >= 6 and st.groups == 1)
    # Subscriptions, with since.
    sub = b.subscribe("sub/")
    a.register("sub/one", 1)
    a.update("sub/one", 2)
    a.unregister("sub/one")
    evs = [sub.next(WAIT) for _ in range(3)]
    check("subscribe: registered, updated, unregistered in order",
          [x.kind for x in evs if x] == ["registered", "updated",
                                         "unregistered"]
          and evs[2].reason == "unregistered" and evs[1].entry.value == 2)
    sub2 = b.subscribe("sub/", since=sub.seq)
    replay = [sub2.next(WAIT) for _ in range(3)]
    check("subscribe with since replays the events after it, gap false",
          not sub2.gap and not sub2.has_snapshot
          and [x.seq for x in replay if x] == [x.seq for x in evs])
    check("subscribe with a future since: BadRequest",
          raises(procreg.BadRequest, b.subscribe, "sub/",
                 since=replay[-1].seq + 100) is not None)
    check("unsubscribe: True, then False", sub2.close() is True and
          b.unsubscribe(sub2.sub) is False)
    with b.subscribe("grp/", groups=True) as gs:
        check("subscribe groups: snapshot of members",
              [x.group for x in gs.members] == ["grp/x"])
    # evict (the daemon's own user is an administrator).
    a.register("svc/evictme")
    check("evict", b.evict("svc/evictme") is True)
    ev = a.next_event(WAIT)
    check("the holder gets Lost(evicted)",
          ev == procreg.Lost("svc/evictme", "evicted"))
    check("UnknownMethod for a method the daemon lacks",
          raises(procreg.UnknownMethod, a._do, "frobnicate", [], None)
          is not None)
    a.close()
    check("a closed client raises ConnectionClosed",
          raises(procreg.ConnectionClosed, a.whereis, "x") is not None)
    b.close()


def error_mapping():
    ok = all(type(errors.from_wire([code, "m"])) is cls for code, cls in [
        ("bad_request", procreg.BadRequest),
        ("unknown_method", procreg.UnknownMethod),
        ("taken", procreg.Taken), ("not_found", procreg.NotFound),
        ("not_owner", procreg.NotOwner), ("busy", procreg.Busy),
        ("limit", procreg.Limit), ("too_large", procreg.TooLarge),
        ("forbidden", procreg.Forbidden), ("timeout", procreg.CallTimeout),
        ("down", procreg.DownError), ("stale", procreg.Stale)])
    other = errors.from_wire(["no_such_key", "size is not set"])
    check("every protocol code has its class; others are RemoteError",
          ok and type(other) is procreg.RemoteError
          and other.code == "no_such_key" and other.message ==
          "size is not set" and isinstance(other, procreg.ProcregError))


def calls_and_serve(path):
    srv = procreg.connect(path)
    cli = procreg.connect(path)
    served = []

    @srv.serve("svc/kv")
    def kv(payload):
        served.append(payload)
        if payload == "boom":
            raise procreg.RemoteError("no such key", code="no_such_key")
        if payload == "crash":
            raise RuntimeError("bug")
        return {"echo": payload}

    stop = threading.Event()

    def loop():
        while not stop.is_set():
            srv.next_event(0.05)
    t = threading.Thread(target=loop)
    t.start()
    try:
        check("serve decorator: registered and answering",
              cli.call("svc/kv", [1, 2], timeout=5) == {"echo": [1, 2]})
        e = raises(procreg.RemoteError, cli.call, "svc/kv", "boom")
        check("a handler's ServerError reaches the caller with its code",
              e is not None and e.code == "no_such_key")
        e = raises(procreg.RemoteError, cli.call, "svc/kv", "crash")
        check("a handler's exception is replied as code 'error'",
              e is not None and e.code == "error" and "bug" in e.message)
        check("call to nobody: NotFound", raises(procreg.NotFound, cli.call,
                                                 "svc/nobody", 1) is not None)
    finally:
        stop.set()
        t.join()
    # A callee that does not answer: CallTimeout; one that goes away: Down.
    mute = procreg.connect(path)
    mute.register("svc/mute")
    check("call without a reply: CallTimeout",
          raises(procreg.CallTimeout, cli.call, "svc/mute", 1, timeout=0.2)
          is not None)
    ev = mute.next_event(WAIT)
    check("the callee saw the Call; a late reply is NotFound",
          isinstance(ev, procreg.Call) and raises(procreg.NotFound,
                                                   mute.reply, ev, 1)
          is not None)
    threading.Timer(0.3, mute.close).start()
    check("call whose callee goes away: Down",
          raises(procreg.DownError, cli.call, "svc/mute", 1, timeout=5)
          is not None)
    srv.close()
    cli.close()


def hold_cm(path):
    a = procreg.connect(path)
    b = procreg.connect(path)
    got = {}

    def waiter():
        with b.hold("leader", "b", timeout=WAIT) as h:
            got["entry"] = h.entry
            got["owner"] = b.whereis("leader").conn
        got["after"] = b.whereis("leader")
    with a.hold("leader", "a") as h:
        check("hold: we own the name inside the block",
              a.whereis("leader").conn == a.conn and h.entry.value == "a")
        t = threading.Thread(target=waiter)
        t.start()
        check("a second holder waits in the queue",
              eventually(lambda: a.queue("leader") == [b.conn]))
    t.join(WAIT + 5)
    check("on exit the name passes to the waiter, then is released",
          got.get("owner") == b.conn and got["entry"].value == "b"
          and got.get("after") is None)
    with a.hold("x"):
        def try_hold():
            with b.hold("x", wait=False):
                pass
        check("hold(wait=False) on a taken name: Taken",
              raises(procreg.Taken, try_hold) is not None)
    a.close()
    b.close()


def kill9(path):
    watcher = procreg.connect(path)
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {PYSRC!r})
import procreg
c = procreg.connect({path!r})
c.register("py/victim", "child")
print("ready", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE)
    check("the child registered with the package",
          child.stdout.readline() == b"ready\n")
    ref = watcher.monitor("py/victim")
    check("its entry names the child's pid",
          watcher.whereis("py/victim").pid == child.pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    ev = watcher.next_event(WAIT)
    check("kill -9 of the holder: the monitor fires disconnected",
          ev == procreg.Down(ref, "py/victim", "disconnected"))
    watcher.close()


def restart(daemon):
    path = daemon.path
    seen = []
    r = procreg.connect(path, auto_reconnect=True, timeout=5,
                        on_reconnect=seen.append)
    other = procreg.connect(path)
    r.register("rc/plain", {"v": 1})
    r.update("rc/plain", {"v": 2})
    r.register("rc/queued", "q", queue=True, allow_replacement=True)
    r.join("rc/group", "member-value")
    other.register("rc/other")
    ref_other = r.monitor("rc/other")
    ref_conn = r.monitor(other.conn)
    sub = r.subscribe("rc/")
    old_boot = r.server.boot
    check("the daemon stops", daemon.stop() == 0)
    check("the daemon starts again on the same socket", daemon.start())
    evs = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not any(
            isinstance(x, procreg.Reconnected) for x in evs):
        ev = r.next_event(0.5)
        if ev is not None:
            evs.append(ev)
    rec = [x for x in evs if isinstance(x, procreg.Reconnected)]
    check("auto-reconnect: Reconnected (restarted) and on_reconnect",
          rec and rec[0].restarted and rec[0].boot != old_boot
          and not rec[0].lost_names and seen == rec[:1])
    while True:
        ev = r.next_event(0.3)
        if ev is None:
            break
        evs.append(ev)
    fresh = procreg.connect(path)
    e = fresh.whereis("rc/plain")
    check("names come back with their last value",
          e is not None and e.conn == r.conn and e.value == {"v": 2})
    check("a queued name comes back (Acquired) with its value",
          fresh.whereis("rc/queued").value == "q"
          and any(isinstance(x, procreg.Acquired) and x.name == "rc/queued"
                  for x in evs))
    check("groups are joined again with their value",
          [(m.conn, m.value) for m in fresh.members("rc/group")]
          == [(r.conn, "member-value")])
    downs = {x.ref: x.reason for x in evs if isinstance(x, procreg.Down)}
    check("monitors of names that did not come back and of connections: "
          "noproc", downs.get(ref_other) == "noproc"
          and downs.get(ref_conn) == "noproc")
    ended = sub.next(1)
    check("the subscription ends with Restarted",
          isinstance(ended, procreg.Restarted) and ended.sub == sub.sub)
    # A monitor set again on the new daemon: the name comes back later.
    ref = r.monitor("rc/late")
    r.next_event(WAIT)   # its noproc
    fresh.register("rc/late")
    ref = r.monitor("rc/late")
    fresh.unregister("rc/late")
    ev = r.next_event(WAIT)
    check("monitors work after the reconnect (refs are the client's own)",
          ev == procreg.Down(ref, "rc/late", "unregistered"))
    check("the old connection's call ids are not replied to",
          raises(procreg.NotFound, r.reply, 1, None) is not None)
    other.close()
    fresh.close()
    r.close()


async def aio_part(daemon):
    path = daemon.path
    srv = await procreg.aio.connect(path)
    cli = await procreg.aio.connect(path)
    check("aio: hello at connect", srv.server.protocol == 2)

    @srv.serve("aio/svc")
    async def handle(payload):
        await asyncio.sleep(0)
        return payload * 2
    await srv.register("aio/svc")
    res = await asyncio.gather(*(cli.call("aio/svc", i, timeout=20)
                                 for i in range(1000)))
    check("aio: 1,000 concurrent calls, each answered right",
          res == [i * 2 for i in range(1000)])
    e = await cli.whereis("aio/svc")
    check("aio: whereis returns an Entry", e.conn == srv.conn)
    try:
        await cli.register("aio/svc")
        check("aio: Taken", False)
    except procreg.Taken:
        check("aio: Taken", True)
    p = cli.pipeline()
    for _ in range(50):
        p.whereis("aio/svc")
    out = await p.execute()
    check("aio: a pipeline of 50 whereis", len(out) == 50
          and all(x == e for x in out))
    ref = await cli.monitor("aio/svc")
    await cli.join("aio/grp")
    await srv.publish("aio/grp", "hello")
    ev = await cli.next_event(WAIT)
    check("aio: publish arrives (%r)" % (ev,), ev == procreg.Publish("aio/grp", srv.conn,
                                                        "hello"))
    sub = await cli.subscribe("aio/")
    await srv.register("aio/x", 1)
    ev = await sub.next(WAIT)
    check("aio: subscription event", isinstance(ev, procreg.SubEvent)
          and ev.kind == "registered" and ev.name == "aio/x")
    async with srv.hold("aio/lead") as h:
        check("aio: async with hold", (await cli.whereis("aio/lead")).gen
              == h.entry.gen)
    check("aio: released after the block",
          await cli.whereis("aio/lead") is None)
    await srv.close()
    ev = await cli.next_event(WAIT)
    check("aio: the server's close fires the monitor",
          ev == procreg.Down(ref, "aio/svc", "disconnected"))
    n = len([e async for e in cli.list("aio/")])
    check("aio: list async iterator", n == 0)
    # auto-reconnect over a restart.
    r = await procreg.aio.connect(path, auto_reconnect=True, timeout=5)
    await r.register("aio/back", "v")
    await r.join("aio/back-group")
    check("aio: daemon restarts", daemon.stop() == 0 and daemon.start())
    ev = None
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ev = await r.next_event(1)
        if isinstance(ev, procreg.Reconnected):
            break
    fresh = await procreg.aio.connect(path)
    e = await fresh.whereis("aio/back")
    check("aio: auto-reconnect restores names and groups",
          isinstance(ev, procreg.Reconnected) and e is not None
          and e.value == "v" and len(await fresh.members("aio/back-group"))
          == 1)
    await r.close()
    await fresh.close()
    await cli.close()


# A fake daemon: answers hello properly (or not), then misbehaves.
def fake_daemon(path, mode):
    import msgpack
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    hello = {"server": "procreg", "version": "0", "protocol": 2, "conn": 1,
             "boot": "0" * 32, "max_message": 1048576}

    def run():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            up = msgpack.Unpacker(raw=False)
            try:
                conn.settimeout(20)
                first = True
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    up.feed(data)
                    for req in up:
                        if first and mode != "silent-hello":
                            first = False
                            if mode == "garbage-hello":
                                conn.sendall(b"\xc1\xc1\xc1\xc1")
                                continue
                            conn.sendall(msgpack.packb([1, req[1], None,
                                                        hello]))
                            continue
                        if mode == "garbage":
                            conn.sendall(b"\x94\x01\xc1" + b"\xff" * 64)
                        elif mode == "huge-str":
                            conn.sendall(b"\x94\x01" + b"\xce" +
                                         req[1].to_bytes(4, "big") +
                                         b"\xc0\xdb\xff\xff\xff\xf0abc")
                        elif mode == "huge-flood":
                            conn.sendall(b"\x94\x01" + b"\xce" +
                                         req[1].to_bytes(4, "big") +
                                         b"\xc0\xdb\xff\xff\xff\xf0")
                            for _ in range(64):
                                conn.sendall(b"x" * 65536)
                        elif mode == "huge-array":
                            conn.sendall(b"\xdd\x7f\xff\xff\xff\x01")
                        elif mode == "deep":
                            conn.sendall(b"\x91" * 5000)
                        elif mode == "bad-utf8":
                            conn.sendall(b"\x94\x01" + msgpack.packb(req[1])
                                         + b"\xc0\xa2\xff\xfe")
                        elif mode == "wrong-shape":
                            conn.sendall(msgpack.packb([7, "x"]))
                        elif mode == "bad-entry":
                            conn.sendall(msgpack.packb([1, req[1], None,
                                                        {"nam": 1}]))
                        # silent: never answer
            except OSError:
                pass
            finally:
                conn.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv


def hostile(tmp):
    modes = ["garbage-hello", "silent-hello", "garbage", "huge-str",
             "huge-flood",
             "huge-array", "deep", "bad-utf8", "wrong-shape", "bad-entry",
             "silent"]
    for mode in modes:
        path = os.path.join(tmp, "fake-%s.sock" % mode)
        srv = fake_daemon(path, mode)
        start = time.monotonic()
        try:
            try:
                c = procreg.connect(path, timeout=1.0,
                                    max_message=1 << 20)
                try:
                    c.whereis("x")
                    outcome = "answered"
                finally:
                    c.close()
            except procreg.ProcregError as e:
                outcome = type(e).__name__
            # A declared length that never completes waits for its bytes
            # until the timeout; bytes past max_message end it at once.
            want = {"silent-hello": "Timeout", "silent": "Timeout",
                    "huge-str": "Timeout"}.get(mode, "ProtocolError")
            check("fake daemon %-13s: sync client raises %s, no hang (%s)"
                  % (mode, want, outcome), outcome == want
                  and time.monotonic() - start < 5)

            async def aio_try():
                try:
                    c = await procreg.aio.connect(path, timeout=1.0,
                                                  max_message=1 << 20)
                    try:
                        await c.whereis("x")
                        return "answered"
                    finally:
                        await c.close()
                except procreg.ProcregError as e:
                    return type(e).__name__
            start = time.monotonic()
            outcome = asyncio.run(asyncio.wait_for(aio_try(), 10))
            check("fake daemon %-13s: aio client raises %s, no hang (%s)"
                  % (mode, want, outcome), outcome == want
                  and time.monotonic() - start < 5)
        finally:
            srv.close()


def room_example(path):
    env = dict(os.environ, PROCREG_SOCKET=path)
    room = subprocess.Popen([sys.executable, os.path.join(
        PYSRC, "examples", "room.py"), "lobby"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = room.stdout.readline().decode()
        check("room.py registers room/lobby", "registered room/lobby" in line)
        c = procreg.connect(path)
        c.join("room/lobby", "alice")
        c.publish("room/lobby", {"from": "alice", "text": "hi bob"},
                  echo=False)
        got = eventually(lambda: c.call("room/lobby", "get_messages"))
        check("room.py keeps the line and answers get_messages",
              got == [{"from": "alice", "text": "hi bob"}])
        e = raises(procreg.RemoteError, c.call, "room/lobby", "what")
        check("room.py refuses other calls with unknown_call",
              e is not None and e.code == "unknown_call")
        c.close()
    finally:
        room.kill()
        room.wait()


def docs():
    text = pydoc.render_doc(procreg.client.Client, renderer=pydoc.plaintext)
    atext = pydoc.render_doc(procreg.aio.Client, renderer=pydoc.plaintext)
    missing = [n for mod in (procreg.client.Client, procreg.aio.Client)
               for n, f in vars(mod).items()
               if not n.startswith("_") and callable(f) and not f.__doc__]
    check("pydoc renders both clients; every public method has a docstring"
          + (" (missing: %s)" % missing if missing else ""),
          "register" in text and "whereis" in atext and not missing)


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-pyc.")
    path = os.path.join(tmp, "s.sock")
    daemon = Daemon(path)
    try:
        check("the daemon accepts connections", daemon.start())
        os.environ.pop("PROCREG_SOCKET", None)
        os.environ["PROCREG_SOCKET"] = path
        check("the default path follows PROCREG_SOCKET",
              procreg.default_socket_path() == path)
        steps = [("methods", lambda: sync_methods(path)),
                 ("errors", error_mapping),
                 ("calls", lambda: calls_and_serve(path)),
                 ("hold", lambda: hold_cm(path)),
                 ("kill9", lambda: kill9(path)),
                 ("room", lambda: room_example(path)),
                 ("restart", lambda: restart(daemon)),
                 ("aio", lambda: asyncio.run(aio_part(daemon))),
                 ("hostile", lambda: hostile(tmp)),
                 ("docs", docs)]
        for name, fn in steps:
            try:
                fn()
            except Exception as e:  # a failure, not a crash of the suite
                import traceback
                traceback.print_exc()
                check("%s: ran to the end (%r)" % (name, e), False)
    finally:
        code = daemon.stop()
        check("the daemon exits 0 on SIGTERM", code == 0)
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    print(f"pyclient: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
