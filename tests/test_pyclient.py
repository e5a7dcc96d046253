#!/usr/bin/python3
"""The Python client package (src/python/procreg) against the real daemon.

unittest: each TestCase class starts its own procregd ($PROCREGD, default
../procregd) on a private socket, waits until it accepts, and stops it when
the class ends, also on failure, checking that it exits 0 on SIGTERM (under
tests/valgrind-procregd.sh that is where a leak or invalid access shows).
The classes run every protocol method through the synchronous and the
asyncio clients; check that errors map to their exception classes, that a
monitor sees a kill -9 of a child holding a name, that auto-reconnect
restores names (with options and values), groups and monitors across a
daemon restart (those classes have their own daemon), 1,000 concurrent
asyncio calls, the serve decorator, hold as a context manager,
subscriptions with since, the room example, and that a fake daemon sending
garbage, nothing, or an oversized declared length never hangs either
client.  Every wait is bounded; nothing waits for time to order events."""
import asyncio
import os
import pydoc
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
PYSRC = os.path.join(HERE, "..", "src", "python")
sys.path.insert(0, PYSRC)
import procreg  # noqa: E402
import procreg.aio  # noqa: E402
from procreg import errors  # noqa: E402

DAEMON = os.environ.get("PROCREGD", os.path.join(HERE, "..", "procregd"))
WAIT = 10.0


def eventually(pred, timeout=WAIT):
    """Polls pred until it is true or timeout passes; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


def readline_within(pipe, timeout=WAIT):
    """A line from a child's stdout, or b"" if none comes within timeout."""
    ready, _, _ = select.select([pipe], [], [], timeout)
    return pipe.readline() if ready else b""


def events_until(client, done, timeout=WAIT):
    """The sync client's events until done(events) holds or timeout."""
    evs = []
    deadline = time.monotonic() + timeout
    while not done(evs):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ev = client.next_event(min(left, 0.5))
        if ev is not None:
            evs.append(ev)
    return evs


class Daemon:
    def __init__(self, path):
        self.path = path
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([DAEMON, "-s", self.path],
                                     stderr=subprocess.DEVNULL)

        def accepting():
            if self.proc.poll() is not None:
                return "exited"       # no use waiting longer
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.path)
                return "accepting"
            except OSError:
                return None
            finally:
                s.close()
        return eventually(accepting) == "accepting"

    def stop(self):
        """SIGTERM; the exit status, or None if it was not running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "killed after %gs" % WAIT
        return None


class DaemonMixin:
    """A daemon for the class on a private socket (self.path), stopped in
    a class cleanup (run also when setUpClass or a test fails), which
    asserts it exits 0 on SIGTERM."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="procreg-pyc.")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.daemon = Daemon(os.path.join(cls.tmp, "s.sock"))
        cls.path = cls.daemon.path
        cls.addClassCleanup(cls.daemon.stop)   # whatever happens
        if not cls.daemon.start():
            raise AssertionError("the daemon accepts connections (%s)"
                                 % DAEMON)
        cls.addClassCleanup(cls._stop_daemon)  # runs first: the exit check

    @classmethod
    def _stop_daemon(cls):
        running = cls.daemon.proc.poll() is None
        code = cls.daemon.stop()
        if code != 0:
            raise AssertionError(
                "the daemon exits 0 on SIGTERM (exit %r%s)" % (
                    code if running else cls.daemon.proc.returncode,
                    "" if running else ", it had already ended"))


class SyncCase(DaemonMixin, unittest.TestCase):
    def connect(self, **kw):
        c = procreg.connect(self.path, **kw)
        self.addCleanup(c.close)
        return c

    def assertNoEvent(self, client, what):
        """Nothing else queued for client (the suite used to run on the
        same connections, where a stray event failed a later check)."""
        self.assertIsNone(client.next_event(0), what)


class AioCase(DaemonMixin, unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        # IsolatedAsyncioTestCase runs its loop in debug mode, whose checks
        # slow the 1,000 calls down severalfold and warn of slow callbacks.
        asyncio.get_running_loop().set_debug(False)

    async def connect(self, **kw):
        c = await procreg.aio.connect(self.path, **kw)
        self.addAsyncCleanup(c.close)
        return c


# -- connection and errors -------------------------------------------------

class ConnectionAndErrorsTest(SyncCase):
    def test_default_socket_path(self):
        with mock.patch.dict(os.environ, {"PROCREG_SOCKET": self.path}):
            self.assertEqual(procreg.default_socket_path(), self.path,
                             "the default path follows PROCREG_SOCKET")

    def test_hello(self):
        what = "hello: server, protocol 3, our conn id"
        a = self.connect(label="py-a")
        self.assertEqual(a.server.server, "procreg", what)
        self.assertEqual(a.server.protocol, 3, what)
        self.assertIsNone(a.server.node, "hello: no node without --etcd")
        self.assertGreater(a.conn, 0, what)
        self.assertEqual(a.hello("again").conn, a.conn, what)

    def test_error_mapping(self):
        what = "every protocol code has its class; others are RemoteError"
        for code, cls in [
                ("bad_request", procreg.BadRequest),
                ("unknown_method", procreg.UnknownMethod),
                ("taken", procreg.Taken), ("not_found", procreg.NotFound),
                ("not_owner", procreg.NotOwner), ("busy", procreg.Busy),
                ("limit", procreg.Limit), ("too_large", procreg.TooLarge),
                ("forbidden", procreg.Forbidden),
                ("timeout", procreg.CallTimeout),
                ("down", procreg.DownError), ("stale", procreg.Stale),
                ("unavailable", procreg.Unavailable)]:
            with self.subTest(code=code):
                self.assertIs(type(errors.from_wire([code, "m"])), cls, what)
        with self.subTest(code="no_such_key"):
            other = errors.from_wire(["no_such_key", "size is not set"])
            self.assertIs(type(other), procreg.RemoteError, what)
            self.assertEqual(other.code, "no_such_key", what)
            self.assertEqual(other.message, "size is not set", what)
            self.assertIsInstance(other, procreg.ProcregError, what)

    def test_unknown_method(self):
        a = self.connect()
        with self.assertRaises(procreg.UnknownMethod, msg="UnknownMethod "
                               "for a method the daemon lacks"):
            a._do("frobnicate", [], None)

    def test_closed_client(self):
        a = self.connect()
        a.close()
        with self.assertRaises(procreg.ConnectionClosed,
                               msg="a closed client raises ConnectionClosed"):
            a.whereis("x")


# -- names -----------------------------------------------------------------

class NamesTest(SyncCase):
    def test_register_whereis_and_errors(self):
        a = self.connect(label="py-a")
        b = self.connect(timeout=5)
        e = a.register("svc/a", {"port": 1})
        what = "register returns an Entry dataclass"
        self.assertIsInstance(e, procreg.Entry, what)
        self.assertEqual(e.value, {"port": 1}, what)
        self.assertEqual(e.pid, os.getpid(), what)
        what = "whereis finds it, and None for a free name"
        self.assertEqual(b.whereis("svc/a"), e, what)
        self.assertIsNone(b.whereis("svc/none"), what)
        for what, exc, fn, args in [
                ("register: Taken", procreg.Taken, b.register, ("svc/a",)),
                ("register: BadRequest for an empty name",
                 procreg.BadRequest, a.register, ("",)),
                ("unregister: NotOwner", procreg.NotOwner, b.unregister,
                 ("svc/a",)),
                ("unregister: Stale with another gen", procreg.Stale,
                 a.unregister, ("svc/a", e.gen + 99)),
                ("unregister: NotFound", procreg.NotFound, a.unregister,
                 ("svc/none",))]:
            with self.subTest(what):
                with self.assertRaises(exc, msg=what):
                    fn(*args)

    def test_update_and_unregister_with_gen(self):
        a = self.connect()
        e = a.register("svc/u", {"port": 1})
        u = a.update("svc/u", "v2", e.gen)
        what = "update keeps since and gen"
        self.assertEqual(u.value, "v2", what)
        self.assertEqual(u.gen, e.gen, what)
        self.assertEqual(u.since, e.since, what)
        self.assertTrue(a.unregister("svc/u", e.gen),
                        "unregister with the right gen")

    def test_await_name_and_queue(self):
        a = self.connect()
        b = self.connect(timeout=5)
        with self.assertRaises(procreg.CallTimeout, msg="await_name 0 on a "
                               "free name: CallTimeout"):
            b.await_name("svc/later", 0)
        a.register("svc/later", 7)
        self.assertEqual(b.await_name("svc/later", 1).value, 7,
                         "await_name of a registered name: its entry")
        q = b.register("svc/later", "b", queue=True)
        what = "register queue=True: Queued(position 1)"
        self.assertEqual(q, procreg.Queued("svc/later", 1), what)
        self.assertEqual(a.queue("svc/later"), [b.conn], what)
        a.unregister("svc/later")
        ev = b.next_event(WAIT)
        what = "the waiter gets Acquired with its value"
        self.assertIsInstance(ev, procreg.Acquired, what)
        self.assertEqual(ev.entry.conn, b.conn, what)
        self.assertEqual(ev.entry.value, "b", what)
        self.assertNoEvent(b, what + ", and nothing else")

    def test_replace(self):
        a = self.connect()
        b = self.connect(timeout=5)
        b.register("svc/prim", "b", allow_replacement=True)
        ne = a.register("svc/prim", "a", replace=True)
        ev = b.next_event(WAIT)
        what = "replace takes it; the old owner gets Lost(replaced)"
        self.assertEqual(ne.conn, a.conn, what)
        self.assertEqual(ev, procreg.Lost("svc/prim", "replaced"), what)
        self.assertNoEvent(b, what + ", and nothing else")

    def test_register_many_list_and_stats(self):
        a = self.connect()
        b = self.connect(timeout=5)
        a.register("svc/one")
        a.join("grp/stats")
        ents = a.register_many([("many/1", 1), "many/2", ["many/3", None],
                                "many/4", "many/5"])
        what = "register_many: entries in order"
        self.assertEqual([x.name for x in ents],
                         ["many/%d" % i for i in range(1, 6)], what)
        self.assertEqual(ents[0].value, 1, what)
        what = "register_many is all or none: Taken, nothing registered"
        with self.assertRaises(procreg.Taken, msg=what):
            b.register_many(["many/6", "many/1"])
        self.assertIsNone(b.whereis("many/6"), what)
        listed = list(b.list("many/", page_size=2))
        self.assertEqual([x.name for x in listed],
                         ["many/%d" % i for i in range(1, 6)],
                         "list pages through every match (pages of 2)")
        st = a.stats()
        what = "stats: a Stats dataclass"
        self.assertIsInstance(st, procreg.Stats, what)
        self.assertGreaterEqual(st.connections, 2, what)
        self.assertGreaterEqual(st.names, 6, what)
        self.assertEqual(st.groups, 1, what)

    def test_evict(self):
        # The daemon's own user is an administrator.
        a = self.connect()
        b = self.connect()
        a.register("svc/evictme")
        self.assertIs(b.evict("svc/evictme"), True, "evict")
        ev = a.next_event(WAIT)
        self.assertEqual(ev, procreg.Lost("svc/evictme", "evicted"),
                         "the holder gets Lost(evicted)")
        self.assertNoEvent(a, "the holder gets Lost(evicted), and nothing "
                           "else")


# -- messages and calls ----------------------------------------------------

class MessagesAndCallsTest(SyncCase):
    def test_send_to_a_name(self):
        a = self.connect()
        b = self.connect(timeout=5)
        e = a.register("svc/a")
        self.assertIs(b.send("svc/a", [1, "two"]), True, "send is accepted")
        ev = a.next_event(WAIT)
        what = "the owner gets a Message"
        self.assertIsInstance(ev, procreg.Message, what)
        self.assertEqual(ev.target, "svc/a", what)
        self.assertEqual(ev.sender, b.conn, what)
        self.assertEqual(ev.payload, [1, "two"], what)
        with self.assertRaises(procreg.Stale,
                               msg="send with a stale gen: Stale"):
            b.send("svc/a", 1, e.gen + 1)
        self.assertNoEvent(a, "nothing delivered for a stale gen")

    def test_send_to_a_connection(self):
        a = self.connect()
        b = self.connect()
        b.send(a.conn, "by conn")
        ev = a.next_event(WAIT)
        what = "send to a connection id"
        self.assertIsInstance(ev, procreg.Message, what)
        self.assertEqual(ev.target, a.conn, what)
        self.assertEqual(ev.payload, "by conn", what)

    def test_call_to_nobody(self):
        cli = self.connect()
        with self.assertRaises(procreg.NotFound,
                               msg="call to nobody: NotFound"):
            cli.call("svc/nobody", 1)

    def test_call_without_reply(self):
        cli = self.connect()
        mute = self.connect()
        mute.register("svc/mute")
        with self.assertRaises(procreg.CallTimeout,
                               msg="call without a reply: CallTimeout"):
            cli.call("svc/mute", 1, timeout=0.2)
        ev = mute.next_event(WAIT)
        what = "the callee saw the Call; a late reply is NotFound"
        self.assertIsInstance(ev, procreg.Call, what)
        with self.assertRaises(procreg.NotFound, msg=what):
            mute.reply(ev, 1)

    def test_call_whose_callee_goes_away(self):
        cli = self.connect()
        mute = self.connect()
        mute.register("svc/gone")
        seen = []

        def close_on_call():   # the callee leaves once the call reached it
            seen.append(mute.next_event(WAIT))
            mute.close()
        t = threading.Thread(target=close_on_call)
        t.start()
        self.addCleanup(t.join, WAIT + 5)
        with self.assertRaises(procreg.DownError,
                               msg="call whose callee goes away: Down"):
            cli.call("svc/gone", 1, timeout=5)
        t.join(WAIT + 5)
        self.assertIsInstance(seen[0] if seen else None, procreg.Call,
                              "call whose callee goes away: it saw the Call")


# -- monitors --------------------------------------------------------------

class MonitorsTest(SyncCase):
    def test_demonitor_and_downs(self):
        # In sequence on b: the demonitored ref must fire nothing.
        a = self.connect()
        b = self.connect(timeout=5)
        a.register("svc/m")
        ref = b.monitor("svc/m")
        ref2 = b.monitor("svc/m")
        what = "demonitor: True, then False"
        self.assertIs(b.demonitor(ref2), True, what)
        self.assertIs(b.demonitor(ref2), False, what)
        a.unregister("svc/m")
        ev = b.next_event(WAIT)
        what = "down: unregistered"
        self.assertIsInstance(ev, procreg.Down, what)
        self.assertEqual(ev.ref, ref, what)
        self.assertEqual(ev.reason, "unregistered", what)
        ref = b.monitor("svc/ghost")
        ev = b.next_event(WAIT)
        self.assertEqual(ev, procreg.Down(ref, "svc/ghost", "noproc"),
                         "down: noproc at once")

    def test_kill9_of_the_holder(self):
        watcher = self.connect()
        child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {PYSRC!r})
import procreg
c = procreg.connect({self.path!r})
c.register("py/victim", "child")
print("ready", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE)
        self.addCleanup(child.stdout.close)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        self.assertEqual(readline_within(child.stdout), b"ready\n",
                         "the child registered with the package")
        ref = watcher.monitor("py/victim")
        self.assertEqual(watcher.whereis("py/victim").pid, child.pid,
                         "its entry names the child's pid")
        child.send_signal(signal.SIGKILL)
        child.wait()
        ev = watcher.next_event(WAIT)
        self.assertEqual(ev, procreg.Down(ref, "py/victim", "disconnected"),
                         "kill -9 of the holder: the monitor fires "
                         "disconnected")


# -- groups ----------------------------------------------------------------

class GroupsTest(SyncCase):
    def test_join_members_publish_keys_leave(self):
        a = self.connect()
        b = self.connect(timeout=5)
        a.register("svc/prim")
        m = a.join("grp/x", "alice")
        what = "join: a Member"
        self.assertIsInstance(m, procreg.Member, what)
        self.assertEqual(m.group, "grp/x", what)
        self.assertEqual(m.value, "alice", what)
        b.join("grp/x")
        with self.assertRaises(procreg.Taken, msg="join twice: Taken"):
            b.join("grp/x")
        self.assertEqual([x.conn for x in a.members("grp/x")],
                         [a.conn, b.conn], "members in join order")
        r = a.publish("grp/x", "hi", echo=False)
        ev = b.next_event(WAIT)
        what = "publish: delivered 1 without echo, the member gets Publish"
        self.assertEqual(r.delivered, 1, what)
        self.assertEqual(r.busy, [], what)
        self.assertEqual(ev, procreg.Publish("grp/x", a.conn, "hi"), what)
        self.assertIsNone(a.next_event(0), what)
        self.assertEqual(a.keys(a.conn),
                         procreg.Keys(["svc/prim"], ["grp/x"]),
                         "keys of a connection")
        what = "leave, then NotFound"
        self.assertTrue(b.leave("grp/x"), what)
        with self.assertRaises(procreg.NotFound, msg=what):
            b.leave("grp/x")
        self.assertNoEvent(b, "the member got the Publish and nothing else")


# -- subscriptions ---------------------------------------------------------

class SubscriptionsTest(SyncCase):
    def test_subscribe_and_since(self):
        a = self.connect()
        b = self.connect(timeout=5)
        sub = b.subscribe("sub/")
        a.register("sub/one", 1)
        a.update("sub/one", 2)
        a.unregister("sub/one")
        evs = [sub.next(WAIT) for _ in range(3)]
        what = "subscribe: registered, updated, unregistered in order"
        self.assertEqual([x.kind for x in evs if x],
                         ["registered", "updated", "unregistered"], what)
        self.assertEqual(evs[2].reason, "unregistered", what)
        self.assertEqual(evs[1].entry.value, 2, what)
        sub2 = b.subscribe("sub/", since=sub.seq)
        replay = [sub2.next(WAIT) for _ in range(3)]
        what = "subscribe with since replays the events after it, gap false"
        self.assertFalse(sub2.gap, what)
        self.assertFalse(sub2.has_snapshot, what)
        self.assertEqual([x.seq for x in replay if x],
                         [x.seq for x in evs], what)
        with self.assertRaises(procreg.BadRequest, msg="subscribe with a "
                               "future since: BadRequest"):
            b.subscribe("sub/", since=replay[-1].seq + 100)
        what = "unsubscribe: True, then False"
        self.assertIs(sub2.close(), True, what)
        self.assertIs(b.unsubscribe(sub2.sub), False, what)

    def test_subscribe_groups_snapshot(self):
        a = self.connect()
        b = self.connect()
        a.join("grp/x", "alice")
        with b.subscribe("grp/", groups=True) as gs:
            self.assertEqual([x.group for x in gs.members], ["grp/x"],
                             "subscribe groups: snapshot of members")


# -- hold and serve --------------------------------------------------------

class HoldAndServeTest(SyncCase):
    def test_serve_decorator(self):
        srv = self.connect()
        cli = self.connect()
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
        self.addCleanup(t.join, WAIT)
        self.addCleanup(stop.set)
        self.assertEqual(cli.call("svc/kv", [1, 2], timeout=5),
                         {"echo": [1, 2]},
                         "serve decorator: registered and answering")
        with self.subTest("ServerError"):
            what = "a handler's ServerError reaches the caller with its code"
            with self.assertRaises(procreg.RemoteError, msg=what) as cm:
                cli.call("svc/kv", "boom")
            self.assertEqual(cm.exception.code, "no_such_key", what)
        with self.subTest("exception"):
            what = "a handler's exception is replied as code 'error'"
            with self.assertRaises(procreg.RemoteError, msg=what) as cm:
                cli.call("svc/kv", "crash")
            self.assertEqual(cm.exception.code, "error", what)
            self.assertIn("bug", cm.exception.message, what)

    def test_hold_passes_to_the_waiter(self):
        a = self.connect()
        b = self.connect()
        got = {}

        def waiter():
            with b.hold("leader", "b", timeout=WAIT) as h:
                got["entry"] = h.entry
                got["owner"] = b.whereis("leader").conn
            got["after"] = b.whereis("leader")
        with a.hold("leader", "a") as h:
            what = "hold: we own the name inside the block"
            self.assertEqual(a.whereis("leader").conn, a.conn, what)
            self.assertEqual(h.entry.value, "a", what)
            t = threading.Thread(target=waiter)
            t.start()
            self.addCleanup(t.join, WAIT + 5)
            self.assertTrue(eventually(lambda: a.queue("leader") == [b.conn]),
                            "a second holder waits in the queue")
        t.join(WAIT + 5)
        what = "on exit the name passes to the waiter, then is released"
        self.assertEqual(got.get("owner"), b.conn, what)
        self.assertEqual(got["entry"].value, "b", what)
        self.assertIn("after", got, what)
        self.assertIsNone(got["after"], what)

    def test_hold_without_waiting(self):
        a = self.connect()
        b = self.connect()
        with a.hold("x"):
            with self.assertRaises(procreg.Taken, msg="hold(wait=False) on "
                                   "a taken name: Taken"):
                with b.hold("x", wait=False):
                    pass


# -- auto-reconnect and daemon restart -------------------------------------

class RestartTest(SyncCase):
    def test_auto_reconnect_restores_everything(self):
        seen = []
        r = self.connect(auto_reconnect=True, timeout=5,
                         on_reconnect=seen.append)
        other = self.connect()
        r.register("rc/plain", {"v": 1})
        r.update("rc/plain", {"v": 2})
        r.register("rc/queued", "q", queue=True, allow_replacement=True)
        r.join("rc/group", "member-value")
        other.register("rc/other")
        ref_other = r.monitor("rc/other")
        ref_conn = r.monitor(other.conn)
        sub = r.subscribe("rc/")
        old_boot = r.server.boot
        self.assertEqual(self.daemon.stop(), 0, "the daemon stops")
        self.assertTrue(self.daemon.start(),
                        "the daemon starts again on the same socket")

        def complete(evs):   # every event the reconnect is to bring
            downs = {x.ref for x in evs if isinstance(x, procreg.Down)}
            return (any(isinstance(x, procreg.Reconnected) for x in evs)
                    and any(isinstance(x, procreg.Acquired) for x in evs)
                    and {ref_other, ref_conn} <= downs)
        evs = events_until(r, complete)
        rec = [x for x in evs if isinstance(x, procreg.Reconnected)]
        what = "auto-reconnect: Reconnected (restarted) and on_reconnect"
        self.assertTrue(rec, what)
        self.assertTrue(rec[0].restarted, what)
        self.assertNotEqual(rec[0].boot, old_boot, what)
        self.assertFalse(rec[0].lost_names, what)
        self.assertEqual(seen, rec[:1], what)
        fresh = self.connect()
        e = fresh.whereis("rc/plain")
        what = "names come back with their last value"
        self.assertIsNotNone(e, what)
        self.assertEqual(e.conn, r.conn, what)
        self.assertEqual(e.value, {"v": 2}, what)
        what = "a queued name comes back (Acquired) with its value"
        self.assertEqual(fresh.whereis("rc/queued").value, "q", what)
        self.assertTrue(any(isinstance(x, procreg.Acquired)
                            and x.name == "rc/queued" for x in evs), what)
        self.assertEqual([(m.conn, m.value) for m in
                          fresh.members("rc/group")],
                         [(r.conn, "member-value")],
                         "groups are joined again with their value")
        downs = {x.ref: x.reason for x in evs if isinstance(x, procreg.Down)}
        what = ("monitors of names that did not come back and of "
                "connections: noproc")
        self.assertEqual(downs.get(ref_other), "noproc", what)
        self.assertEqual(downs.get(ref_conn), "noproc", what)
        ended = sub.next(WAIT)
        what = "the subscription ends with Restarted"
        self.assertIsInstance(ended, procreg.Restarted, what)
        self.assertEqual(ended.sub, sub.sub, what)
        # A monitor set again on the new daemon: the name comes back later.
        ref = r.monitor("rc/late")
        noproc = procreg.Down(ref, "rc/late", "noproc")
        self.assertIn(noproc, events_until(r, lambda evs: noproc in evs),
                      "a monitor of a free name on the new daemon: noproc")
        fresh.register("rc/late")
        ref = r.monitor("rc/late")
        fresh.unregister("rc/late")
        ev = r.next_event(WAIT)
        self.assertEqual(ev, procreg.Down(ref, "rc/late", "unregistered"),
                         "monitors work after the reconnect (refs are the "
                         "client's own)")
        with self.assertRaises(procreg.NotFound, msg="the old connection's "
                               "call ids are not replied to"):
            r.reply(1, None)


# -- asyncio ---------------------------------------------------------------

class AsyncioTest(AioCase):
    async def test_calls_and_pipeline(self):
        srv = await self.connect()
        cli = await self.connect()
        self.assertEqual(srv.server.protocol, 3, "aio: hello at connect")

        @srv.serve("aio/svc")
        async def handle(payload):
            await asyncio.sleep(0)
            return payload * 2
        await srv.register("aio/svc")
        res = await asyncio.gather(*(cli.call("aio/svc", i, timeout=20)
                                     for i in range(1000)))
        self.assertEqual(res, [i * 2 for i in range(1000)],
                         "aio: 1,000 concurrent calls, each answered right")
        e = await cli.whereis("aio/svc")
        self.assertEqual(e.conn, srv.conn, "aio: whereis returns an Entry")
        with self.assertRaises(procreg.Taken, msg="aio: Taken"):
            await cli.register("aio/svc")
        p = cli.pipeline()
        for _ in range(50):
            p.whereis("aio/svc")
        out = await p.execute()
        what = "aio: a pipeline of 50 whereis"
        self.assertEqual(len(out), 50, what)
        self.assertTrue(all(x == e for x in out), what)

    async def test_events_hold_and_list(self):
        # In sequence on cli's events: a monitor of a live name, a publish,
        # then the server's close.
        srv = await self.connect()
        cli = await self.connect()
        await srv.register("aioev/svc")
        ref = await cli.monitor("aioev/svc")
        await cli.join("aioev/grp")
        await srv.publish("aioev/grp", "hello")
        ev = await cli.next_event(WAIT)
        self.assertEqual(ev, procreg.Publish("aioev/grp", srv.conn, "hello"),
                         "aio: publish arrives")
        sub = await cli.subscribe("aioev/")
        await srv.register("aioev/x", 1)
        ev = await sub.next(WAIT)
        what = "aio: subscription event"
        self.assertIsInstance(ev, procreg.SubEvent, what)
        self.assertEqual(ev.kind, "registered", what)
        self.assertEqual(ev.name, "aioev/x", what)
        async with srv.hold("aioev/lead") as h:
            self.assertEqual((await cli.whereis("aioev/lead")).gen,
                             h.entry.gen, "aio: async with hold")
        self.assertIsNone(await cli.whereis("aioev/lead"),
                          "aio: released after the block")
        await srv.close()
        ev = await cli.next_event(WAIT)
        self.assertEqual(ev, procreg.Down(ref, "aioev/svc", "disconnected"),
                         "aio: the server's close fires the monitor")
        n = len([e async for e in cli.list("aioev/")])
        self.assertEqual(n, 0, "aio: list async iterator")


class AsyncioRestartTest(AioCase):
    async def test_auto_reconnect(self):
        r = await self.connect(auto_reconnect=True, timeout=5)
        await r.register("aio/back", "v")
        await r.join("aio/back-group")
        self.assertEqual(self.daemon.stop(), 0, "aio: daemon restarts")
        self.assertTrue(self.daemon.start(), "aio: daemon restarts")
        ev = None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            ev = await r.next_event(1)
            if isinstance(ev, procreg.Reconnected):
                break
        fresh = await self.connect()
        e = await fresh.whereis("aio/back")
        what = "aio: auto-reconnect restores names and groups"
        self.assertIsInstance(ev, procreg.Reconnected, what)
        self.assertIsNotNone(e, what)
        self.assertEqual(e.value, "v", what)
        self.assertEqual(len(await fresh.members("aio/back-group")), 1, what)


# -- a fake daemon's bad input ---------------------------------------------

# A fake daemon: answers hello properly (or not), then misbehaves.
def fake_daemon(path, mode):
    """A daemon that misbehaves as mode says; returns its listening socket
    and the list of the connections the client closed (EOF seen)."""
    import msgpack
    eofs = []
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
                        eofs.append(mode)
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
            except (BrokenPipeError, ConnectionResetError):
                eofs.append(mode)       # closed while we were writing
            except OSError:
                pass
            finally:
                conn.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, eofs


class FakeDaemonBadInputTest(unittest.TestCase):
    MODES = ["garbage-hello", "silent-hello", "garbage", "huge-str",
             "huge-flood", "huge-array", "deep", "bad-utf8", "wrong-shape",
             "bad-entry", "silent"]
    # A declared length that never completes waits for its bytes until the
    # timeout; bytes past max_message end it at once.
    WANT = {"silent-hello": "Timeout", "silent": "Timeout",
            "huge-str": "Timeout"}

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="procreg-pyc-fake.")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    @staticmethod
    def sync_try(path):
        try:
            c = procreg.connect(path, timeout=1.0, max_message=1 << 20)
            try:
                c.whereis("x")
                return "answered"
            finally:
                c.close()
        except procreg.ProcregError as e:
            return type(e).__name__

    @staticmethod
    def aio_try(path):
        async def attempt():
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
        return asyncio.run(asyncio.wait_for(attempt(), 10))

    def test_each_mode_both_clients(self):
        for mode in self.MODES:
            path = os.path.join(self.tmp, "fake-%s.sock" % mode)
            srv, eofs = fake_daemon(path, mode)
            self.addCleanup(srv.close)
            want = self.WANT.get(mode, "ProtocolError")
            for client, attempt in [("sync", self.sync_try),
                                    ("aio", self.aio_try)]:
                with self.subTest(mode=mode, client=client):
                    closed = len(eofs)
                    start = time.monotonic()
                    outcome = attempt(path)
                    took = time.monotonic() - start
                    what = ("fake daemon %-13s: %s client raises %s, no hang"
                            % (mode, client, want))
                    self.assertEqual(outcome, want, what)
                    self.assertLess(took, 5, what)
                    deadline = time.monotonic() + 5
                    while len(eofs) < closed + 1 and \
                            time.monotonic() < deadline:
                        time.sleep(0.01)
                    self.assertGreaterEqual(
                        len(eofs), closed + 1,
                        "fake daemon %s: the %s client closed its socket"
                        % (mode, client))


# -- protocol 3: cluster mode, without a cluster ----------------------------

class ClusterWithoutEtcdTest(SyncCase):
    """A daemon without --etcd: cluster requests raise Unavailable; the
    local scope is what it was."""

    def test_cluster_unavailable(self):
        c = self.connect()
        for what, call in [
                ("register(scope='cluster')",
                 lambda: c.register("cl/x", scope="cluster")),
                ("nodes()", c.nodes),
                ("whereis(scope='cluster')",
                 lambda: c.whereis("cl/x", scope="cluster")),
                ("list(scope='cluster')",
                 lambda: list(c.list(scope="cluster"))),
                ("list(scope='all')", lambda: list(c.list(scope="all"))),
                ("subscribe(scope='cluster')",
                 lambda: c.subscribe(scope="cluster")),
                ("register(scope='cluster', queue=True)",
                 lambda: c.register("cl/x", scope="cluster", queue=True))]:
            with self.subTest(call=what):
                with self.assertRaises(procreg.Unavailable,
                                       msg=what + " raises Unavailable"
                                       ) as cm:
                    call()
                self.assertEqual(cm.exception.code, "unavailable", what)
                self.assertIsInstance(cm.exception, procreg.ServerError,
                                      what)
        self.assertIsNone(c.whereis("cl/x"), "nothing was registered")
        with self.assertRaises(procreg.BadRequest, msg="scope cluster with "
                               "replace: the daemon's BadRequest"):
            c.register("cl/x", scope="cluster", replace=True)

    def test_local_scope_is_as_before(self):
        c = self.connect()
        e = c.register("cl/l", "v", scope="local")
        what = "a local entry: scope local, no node, not stale"
        self.assertEqual((e.scope, e.node, e.stale), ("local", None, False),
                         what)
        self.assertEqual(c.whereis("cl/l", scope="local"), e,
                         "whereis(scope='local') is whereis")
        self.assertEqual(c.whereis("cl/l", scope="any"), e,
                         "whereis(scope='any') is whereis")
        self.assertEqual(c.whereis("cl/l"), e, "whereis")
        self.assertIsNone(c.whereis("cl/none", scope="local"),
                          "whereis(scope='local') of an absent name: None")
        self.assertEqual(list(c.list("cl/", scope="local")), [e],
                         "list(scope='local') is list")
        self.assertEqual(list(c.list("cl/")), [e], "list")
        st = c.stats()
        self.assertIsNone(st.cluster, "stats: no cluster map")
        self.assertNotIn("cluster", st.extra, "stats: no cluster map")
        p = c.pipeline()
        p.whereis("cl/l").whereis("cl/l", "local").list_page("cl/")
        self.assertEqual(p.execute(), [e, e, [e]],
                         "a pipeline takes whereis's scope")


class ClusterWithoutEtcdAioTest(AioCase):
    async def test_cluster_unavailable(self):
        c = await self.connect()
        with self.assertRaises(procreg.Unavailable, msg="aio: register "
                               "scope cluster raises Unavailable"):
            await c.register("acl/x", scope="cluster")
        with self.assertRaises(procreg.Unavailable, msg="aio: nodes"):
            await c.nodes()
        with self.assertRaises(procreg.Unavailable, msg="aio: whereis "
                               "scope cluster"):
            await c.whereis("acl/x", scope="cluster")
        with self.assertRaises(procreg.Unavailable, msg="aio: list scope "
                               "all"):
            async for _ in c.list(scope="all"):
                pass
        e = await c.register("acl/l")
        self.assertEqual(await c.whereis("acl/l", scope="local"), e,
                         "aio: whereis(scope='local') is whereis")
        self.assertEqual([x async for x in c.list("acl/", scope="local")],
                         [e], "aio: list(scope='local') is list")


def cluster_fake(path, protocol=3):
    """A fake daemon, node n1, that serves connections one after the other
    and records each request as (connection number, method, params).  A
    cluster register gets a cluster entry; whereis "c" a stale cluster
    entry of node n2; nodes n1 and n2; stats a cluster map; a send to
    "kick" a lost nodedown of "held"; a send to "drop" closes the
    connection after its answer.  A protocol-2 fake refuses protocol 3's
    params as protocol 2 did."""
    import msgpack
    log = []
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def entry(name, node=None, stale=False):
        e = {"name": name, "conn": 5 if node else 1, "pid": 4242,
             "uid": 1000, "gid": 1000, "value": None, "since": 1,
             "gen": 7}
        if node:
            e.update(scope="cluster", node=node)
        if stale:
            e["stale"] = True
        return e

    def answer(n, method, params):
        opts = params[2] if len(params) > 2 and isinstance(
            params[2], dict) else {}
        if method == "hello":
            h = {"server": "procreg", "version": "0", "protocol": protocol,
                 "conn": n, "boot": "%032x" % n, "max_message": 1 << 20}
            if protocol >= 3:
                h["node"] = "n1"
            return None, h, []
        if protocol < 3 and (method == "nodes" or "scope" in opts
                             or (method == "whereis" and len(params) > 1)
                             or (method == "list" and len(params) > 3)):
            return (["unknown_method" if method == "nodes" else
                     "bad_request", "protocol 2"], None, [])
        if method == "register":
            cl = opts.get("scope") == "cluster"
            return None, entry(params[0], "n1" if cl else None), []
        if method == "whereis":
            if params[0] == "c":
                return None, entry("c", "n2", stale=True), []
            return None, None, []
        if method == "list":
            if len(params) > 2 and params[2] is not None:
                return None, [], []
            return None, [entry("a"), entry("a", "n2")], []
        if method == "nodes":
            return None, [{"name": "n1", "since": 1, "address": "",
                           "self": True},
                          {"name": "n2", "since": 2, "address": "x:1",
                           "self": False, "later": 1}], []
        if method == "stats":
            return None, {"names": 1, "cluster": {
                "node": "n1", "state": "up", "etcd": "http://e:2379",
                "lease_ttl": 10, "names": 2, "nodes": 2,
                "revision": 42}}, []
        if method == "queue":
            if params[0] == "line":
                return None, [{"node": "n2", "conn": 4},
                              {"node": "n1", "conn": 1}], []
            return None, [3, 5], []
        if method == "subscribe":
            cl = len(params) > 1 and params[1].get("scope") == "cluster"
            return None, {"sub": (1 << 32) + 1 if cl else 1,
                          "seq": 700 if cl else 3,
                          "entries": [entry("b", "n1" if cl else None)]}, []
        if method == "send" and params[0] == "kick":
            return None, True, [[2, "lost", ["held", "nodedown"]]]
        return None, True, []

    def run():
        n = 0
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            n += 1
            up = msgpack.Unpacker(raw=False)
            try:
                conn.settimeout(20)
                done = False
                while not done:
                    data = conn.recv(65536)
                    if not data:
                        break
                    up.feed(data)
                    for req in up:
                        log.append((n, req[2], req[3]))
                        err, res, pushes = answer(n, req[2], req[3])
                        out = msgpack.packb([1, req[1], err, res])
                        for p in pushes:
                            out += msgpack.packb(p)
                        conn.sendall(out)
                        if req[2] == "send" and req[3][0] == "drop":
                            done = True
                            break
            except OSError:
                pass
            finally:
                conn.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, log


class ClusterFakeDaemonTest(unittest.TestCase):
    """What a cluster node's answers become (a fake daemon), and what the
    clients send for protocol 3's options, with both clients."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="procreg-pyc-cl.")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def fake(self, protocol=3):
        path = os.path.join(self.tmp, "cl%d-%d.sock" % (
            protocol, len(os.listdir(self.tmp))))
        srv, log = cluster_fake(path, protocol)
        self.addCleanup(srv.close)
        return path, log

    def test_decode_and_requests(self):
        path, log = self.fake()
        c = procreg.connect(path)
        self.addCleanup(c.close)
        self.assertEqual(c.server.node, "n1", "hello's node")
        e = c.register("held", scope="cluster")
        self.assertEqual(log[-1], (1, "register",
                                   ["held", None, {"scope": "cluster"}]),
                         "register(scope='cluster') sends the scope")
        self.assertEqual((e.scope, e.node, e.stale), ("cluster", "n1", False),
                         "a cluster entry: scope and node")
        c.register("loc", scope="local")
        self.assertEqual(log[-1], (1, "register", ["loc"]),
                         "scope='local' sends no options")
        w = c.whereis("c")
        self.assertEqual(log[-1], (1, "whereis", ["c"]), "whereis: [name]")
        self.assertEqual((w.scope, w.node, w.stale, w.conn),
                         ("cluster", "n2", True, 5),
                         "a stale cluster entry of another node")
        c.whereis("c", scope="cluster", consistent=True)
        self.assertEqual(log[-1], (1, "whereis", ["c", {
            "scope": "cluster", "consistent": True}]),
            "whereis's options as given")
        got = list(c.list(scope="all"))
        self.assertEqual(log[-2:], [
            (1, "list", ["", 1000, None, {"scope": "all"}]),
            (1, "list", ["", 1000, "a", {"scope": "all"}])],
            "list(scope='all'): after nil first, then the last name")
        self.assertEqual([(x.name, x.scope, x.node) for x in got],
                         [("a", "local", None), ("a", "cluster", "n2")],
                         "list all: both scopes of a name")
        nodes = c.nodes()
        self.assertEqual(nodes, [procreg.Node("n1", 1, "", True),
                                 procreg.Node("n2", 2, "x:1", False)],
                         "nodes: Node dataclasses, later keys ignored")
        st = c.stats()
        self.assertEqual(st.cluster["state"], "up", "stats.cluster")
        self.assertEqual(st.cluster["revision"], 42, "stats.cluster")
        self.assertEqual(c.queue("line"), [procreg.Place("n2", 4),
                                           procreg.Place("n1", 1)],
                         "queue of a cluster name: Place objects")
        self.assertEqual(c.queue("lq"), [3, 5],
                         "queue of a local name: connection ids")
        sub = c.subscribe("", scope="cluster", since=650)
        self.assertEqual(log[-1], (1, "subscribe", ["", {
            "since": 650, "scope": "cluster"}]),
            "subscribe(scope='cluster') sends the scope")
        self.assertEqual((sub.sub, sub.seq, sub.entries[0].node),
                         ((1 << 32) + 1, 700, "n1"),
                         "a cluster subscription's snapshot")
        c.send("kick", "x")
        ev = c.next_event(WAIT)
        self.assertEqual(ev, procreg.Lost("held", "nodedown"),
                         "lost nodedown")

    def test_restore_keeps_scope(self):
        path, log = self.fake()
        c = procreg.connect(path, auto_reconnect=True, reconnect_max=0.05)
        self.addCleanup(c.close)
        c.register("held", scope="cluster")
        c.register("loc")
        lsub = c.subscribe("")
        csub = c.subscribe("", scope="cluster")
        c.send("drop", "x")
        ev = events_until(c, lambda evs: any(
            isinstance(x, procreg.Reconnected) for x in evs))
        what = "after a reconnect to a new daemon, a local subscription " \
            "ends with Restarted, a cluster one with Overflow (etcd's " \
            "revisions outlive the daemon)"
        self.assertIsInstance(lsub.next(0), procreg.Restarted, what)
        self.assertEqual(csub.next(0), procreg.Overflow(csub.sub, 700), what)
        self.assertTrue(any(isinstance(x, procreg.Reconnected) for x in ev),
                        "the client reconnects")
        restored = sorted((m, p) for n, m, p in log if n == 2
                          and m == "register")
        self.assertEqual(restored, [
            ("register", ["held", None, {"scope": "cluster"}]),
            ("register", ["loc"])],
            "a cluster name is registered again with its scope")
        c.send("kick", "x")
        evs = events_until(c, lambda evs: procreg.Lost(
            "held", "nodedown") in evs)
        self.assertIn(procreg.Lost("held", "nodedown"), evs, "nodedown")
        c.send("drop", "x")
        events_until(c, lambda evs: any(
            isinstance(x, procreg.Reconnected) for x in evs))
        self.assertEqual([p for n, m, p in log if n == 3
                          and m == "register"], [["loc"]],
                         "after nodedown the name is forgotten")

    def test_aio(self):
        path, log = self.fake()

        async def go():
            c = await procreg.aio.connect(path)
            try:
                self.assertEqual(c.server.node, "n1", "aio: hello's node")
                e = await c.register("held", scope="cluster")
                self.assertEqual((e.scope, e.node), ("cluster", "n1"),
                                 "aio: a cluster entry")
                w = await c.whereis("c", scope="any")
                self.assertEqual(log[-1], (1, "whereis",
                                           ["c", {"scope": "any"}]),
                                 "aio: whereis's scope")
                self.assertTrue(w.stale, "aio: stale")
                self.assertEqual(len(await c.nodes()), 2, "aio: nodes")
                got = [x async for x in c.list(scope="cluster")]
                self.assertEqual(log[-2][2], ["", 1000, None,
                                              {"scope": "cluster"}],
                                 "aio: list's scope")
                self.assertEqual(len(got), 2, "aio: list")
            finally:
                await c.close()
        asyncio.run(asyncio.wait_for(go(), 20))

    def test_protocol2_daemon(self):
        path, log = self.fake(protocol=2)
        c = procreg.connect(path)
        self.addCleanup(c.close)
        c.whereis("l", scope="local")
        self.assertEqual(log[-1], (1, "whereis", ["l"]),
                         "scope='local' to a protocol-2 daemon: [name]")
        with self.assertRaises(procreg.BadRequest, msg="a cluster whereis "
                               "refused by a protocol-2 daemon"):
            c.whereis("c", scope="cluster")
        with self.assertRaises(procreg.BadRequest, msg="a cluster register "
                               "refused by a protocol-2 daemon"):
            c.register("x", scope="cluster")
        with self.assertRaises(procreg.UnknownMethod, msg="nodes unknown "
                               "to a protocol-2 daemon"):
            c.nodes()
        self.assertEqual(c.register("x").scope, "local",
                         "a protocol-2 entry is local")


# -- pydoc -----------------------------------------------------------------

class PydocTest(unittest.TestCase):
    def test_pydoc_and_docstrings(self):
        what = "pydoc renders both clients; every public method has a " \
            "docstring"
        with self.subTest("sync"):
            text = pydoc.render_doc(procreg.client.Client,
                                    renderer=pydoc.plaintext)
            self.assertIn("register", text, what)
        with self.subTest("aio"):
            atext = pydoc.render_doc(procreg.aio.Client,
                                     renderer=pydoc.plaintext)
            self.assertIn("whereis", atext, what)
        with self.subTest("docstrings"):
            missing = [n for mod in (procreg.client.Client,
                                     procreg.aio.Client)
                       for n, f in vars(mod).items()
                       if not n.startswith("_") and callable(f)
                       and not f.__doc__]
            self.assertEqual(missing, [], what)


# -- the room example ------------------------------------------------------

class RoomExampleTest(SyncCase):
    def test_room(self):
        env = dict(os.environ, PROCREG_SOCKET=self.path)
        room = subprocess.Popen([sys.executable, os.path.join(
            PYSRC, "examples", "room.py"), "lobby"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.addCleanup(room.stdout.close)
        self.addCleanup(room.wait)
        self.addCleanup(room.kill)
        line = readline_within(room.stdout).decode()
        self.assertIn("registered room/lobby", line,
                      "room.py registers room/lobby")
        c = self.connect()
        c.join("room/lobby", "alice")
        c.publish("room/lobby", {"from": "alice", "text": "hi bob"},
                  echo=False)
        got = eventually(lambda: c.call("room/lobby", "get_messages"))
        self.assertEqual(got, [{"from": "alice", "text": "hi bob"}],
                         "room.py keeps the line and answers get_messages")
        what = "room.py refuses other calls with unknown_call"
        with self.assertRaises(procreg.RemoteError, msg=what) as cm:
            c.call("room/lobby", "what")
        self.assertEqual(cm.exception.code, "unknown_call", what)


if __name__ == "__main__":
    unittest.main(verbosity=2)
