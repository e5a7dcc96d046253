#!/usr/bin/python3
"""Cluster mode (issue 14, protocol 3): names cluster-wide on etcd v3,
tested across several real procregd nodes and a real etcd.

The harness (tests/clusterlib.py) starts etcd on free loopback ports with
a temporary data directory, and procregd nodes with --etcd, --node,
a random --cluster-prefix and --lease-ttl 2, each on a private socket
with its log in a file; the logs' tails are printed when a test fails.
Nodes and etcd are shared by the tests of a class that do not kill them;
the etcd of the module is shared by every class that does not stop it.
Every wait is a poll with a deadline; the only timing asserted is the
contract's bounds with slack (a dead node's names within TTL + 3 s, a
disconnect's down within 3 s, unavailable within etcd-timeout + 1 s).
Test12SpecReplay replays PROTOCOL.md's msgpack-cluster examples (as
tests/check_spec.c the plain ones); Test13 checks cluster subscriptions
against etcd's own watch of the same keys; Test14 puts keys procreg did
not write under the prefix.

Environment: PROCREGD (default ../procregd), ETCD (default etcd on PATH),
CLUSTER_LOG_LEVEL (the daemons', default debug)."""
import collections
import os
import select
import signal
import subprocess
import sys
import time
import unittest

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import clusterlib as cl  # noqa: E402
from clusterlib import RPCError, eventually, reg_cluster, whereis  # noqa

# The nodes' lease TTL: 2 s keeps the suite quick; under valgrind
# (PROCREGD=tests/valgrind-procregd.sh) a daemon busy with a 900 kB value
# can miss it, so 5 s there.  CLUSTER_TTL overrides both.
TTL = int(os.environ.get("CLUSTER_TTL") or
          (5 if "valgrind" in cl.DAEMON else 2))
WAIT = cl.WAIT
ETCD = None          # the module's shared single-member etcd


def note(fmt, *args):
    """A measurement, printed as the test runs (kept short)."""
    sys.stderr.write("    [measured] " + (fmt % args) + "\n")


def setUpModule():
    global MODULE, ETCD
    if not os.path.exists(cl.ETCD):
        raise AssertionError("etcd not found (%s): make deps installs "
                             "etcd-server" % cl.ETCD)
    MODULE = cl.Harness("cluster-etcd")
    ETCD = MODULE.etcd(1)


def tearDownModule():
    MODULE.cleanup()


class ClusterCase(unittest.TestCase):
    """Prints the daemons' and etcd's log tails when a test fails, and
    checks at class cleanup that every node still running exits 0 on
    SIGTERM (a crash or a leak at shutdown shows there)."""
    harness = None

    @classmethod
    def make_harness(cls, shared=True):
        h = cl.Harness(cls.__name__, ETCD if shared else None)
        cls.harness = h
        cls.addClassCleanup(cls._cleanup)
        return h

    @classmethod
    def _cleanup(cls):
        h = cls.harness
        diag = h.diag()
        codes = h.cleanup()
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            raise AssertionError("nodes did not exit 0 on SIGTERM: %r\n%s"
                                 % (bad, diag))

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result else 0
        out = super().run(result)
        if result is not None and before != (len(result.failures),
                                             len(result.errors)):
            h = type(self).harness
            if h is not None:
                sys.stderr.write("\n===== %s failed; logs:\n%s\n=====\n"
                                 % (self.id(), h.diag()))
        return out

    # helpers
    def client(self, node, timeout=WAIT):
        c = node.client(timeout)
        self.addCleanup(c.close)
        return c

    def name(self, suffix):
        """A name private to this test."""
        return "%s/%s" % (self._testMethodName, suffix)

    def seen(self, client, name, gen=None, timeout=WAIT, node=None):
        """Polls whereis on client until it shows name (with gen and node
        when given); the entry."""
        last = ["nothing"]

        def f():
            e = whereis(client, name)
            last[0] = e
            if e is None or (gen is not None and e.get("gen") != gen) or \
                    (node is not None and e.get("node") != node):
                return None
            return e
        e = eventually(f, timeout)
        self.assertIsNotNone(e, "whereis %r on conn %s never showed it "
                             "(gen %r, node %r) in %gs; last answer: %r"
                             % (name, client.conn, gen, node, timeout,
                                last[0]))
        return e

    def vanishes(self, client, name, timeout=WAIT):
        last = ["nothing"]

        def f():
            last[0] = whereis(client, name)
            return last[0] is None
        ok = eventually(f, timeout)
        self.assertTrue(ok, "whereis %r still answers %r after %gs"
                        % (name, last[0], timeout))

    def assertCode(self, code, method, client, *params, timeout=None):
        try:
            result = client.request(method, params, timeout)
        except RPCError as e:
            self.assertEqual(e.code, code, "%s%r: %s" % (method, params, e))
            return e
        self.fail("%s%r answered %r, expected the error %s"
                  % (method, params, result, code))


class Test01Shared(ClusterCase):
    """Three nodes A, B, C on the module's etcd, shared by tests that do
    not kill anything."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.A, cls.B, cls.C = h.nodes_up(["nodeA", "nodeB", "nodeC"], ETCD,
                                         ttl=TTL)
        cls.prefix = h.nodes[0].argv[h.nodes[0].argv.index(
            "--cluster-prefix") + 1]

    # 1
    def test_01_seen_everywhere_taken_everywhere_gens_grow(self):
        a1, a2 = self.client(self.A), self.client(self.A)
        b, c = self.client(self.B), self.client(self.C)
        n = self.name("svc")
        e = reg_cluster(a1, n, {"port": 5432})
        with self.subTest("the register answer is a cluster entry"):
            for k in ("name", "conn", "pid", "uid", "gid", "value", "since",
                      "gen", "scope", "node"):
                self.assertIn(k, e)
            self.assertEqual((e["name"], e["scope"], e["node"], e["conn"],
                              e["pid"], e["uid"], e["value"]),
                             (n, "cluster", "nodeA", a1.conn, os.getpid(),
                              os.getuid(), {"port": 5432}))
            self.assertNotIn("stale", e)
        for cli, where in ((b, "B"), (c, "C")):
            with self.subTest("whereis on " + where):
                got = self.seen(cli, n, e["gen"])
                self.assertEqual(got.get("scope"), "cluster")
                self.assertEqual(got.get("node"), "nodeA")
                for k in ("name", "conn", "pid", "uid", "gid", "value",
                          "since", "gen"):
                    self.assertEqual(got.get(k), e[k], "key %s" % k)
        for cli, who in ((b, "a conn on B"), (c, "a conn on C"),
                         (a2, "another conn on A"), (a1, "its owner")):
            with self.subTest("taken from " + who):
                self.assertCode("taken", "register", cli, n, None,
                                {"scope": "cluster"})
        with self.subTest("a local register of it on A is taken too"):
            self.assertCode("taken", "register", a2, n)
        with self.subTest("gens grow across nodes"):
            gens = [reg_cluster(cli, self.name("g%d" % i))["gen"]
                    for i, cli in enumerate((a1, b, c, a2, c, b))]
            self.assertEqual(gens, sorted(set(gens)),
                             "gens of registers on A,B,C,A,C,B in turn")
            self.assertGreater(gens[0], e["gen"])
            note("gens A,B,C,A,C,B: %r", gens)
        with self.subTest("gen is the key's create revision in etcd"):
            kv = ETCD.keys(self.prefix + "names/" + n)
            self.assertEqual(len(kv), 1, kv)
            self.assertEqual(int(list(kv.values())[0]["create_revision"]),
                             e["gen"])

    # 2
    def test_02_consistent_whereis(self):
        a, b = self.client(self.A), self.client(self.B)
        for i in range(5):
            n = self.name(str(i))
            e = reg_cluster(a, n, i)
            got = whereis(b, n, consistent=True)
            self.assertIsNotNone(got, "consistent whereis on B right after "
                                 "the register on A answered nil")
            self.assertEqual((got["gen"], got["node"], got["scope"],
                              got["value"]),
                             (e["gen"], "nodeA", "cluster", i))
            self.assertNotIn("stale", got)
        with self.subTest("consistent whereis of a name nobody holds"):
            self.assertIsNone(whereis(b, self.name("none"), consistent=True))
        with self.subTest("after an unregister, consistent sees it gone"):
            a.call("unregister", self.name("0"))
            self.assertIsNone(whereis(b, self.name("0"), consistent=True))

    # 3
    def test_03_namespace(self):
        a, b, b2 = self.client(self.A), self.client(self.B), \
            self.client(self.B)
        c = self.client(self.C)
        x, y = self.name("x"), self.name("y")
        local = b.call("register", x, "local")
        self.assertNotIn("scope", local)
        with self.subTest("cluster register of B's local name from B"):
            self.assertCode("taken", "register", b2, x, None,
                            {"scope": "cluster"})
            self.assertCode("taken", "register", b, x, None,
                            {"scope": "cluster"})
        with self.subTest("whereis on B gives the local entry"):
            got = whereis(b2, x)
            self.assertIsNotNone(got)
            self.assertNotIn("scope", got)
            self.assertEqual((got["conn"], got["gen"]), (b.conn,
                                                         local["gen"]))
            self.assertEqual(whereis(b2, x, scope="local")["gen"],
                             local["gen"])
            self.assertIsNone(whereis(b2, x, scope="cluster"))
        with self.subTest("C does not see B's local name"):
            self.assertIsNone(whereis(c, x))
            self.assertIsNone(whereis(c, x, consistent=True))
        e = reg_cluster(a, y, "clustered")
        self.seen(b, y, e["gen"])
        with self.subTest("local register on B of A's cluster name"):
            self.assertCode("taken", "register", b2, y)
            self.assertCode("taken", "register", b2, y, None,
                            {"scope": "local"})
        with self.subTest("whereis scopes of a cluster name"):
            self.assertIsNone(whereis(b, y, scope="local"))
            self.assertEqual(whereis(b, y, scope="cluster")["gen"], e["gen"])

    # 4
    def test_04_unregister_owner_only_fenced_down_unregistered(self):
        a1, a2 = self.client(self.A), self.client(self.A)
        b, c = self.client(self.B), self.client(self.C)
        n = self.name("n")
        e = reg_cluster(a1, n)
        self.seen(b, n, e["gen"])
        self.seen(c, n, e["gen"])
        ref_b = b.call("monitor", n)
        ref_c = c.call("monitor", n)
        with self.subTest("not_owner from another conn on A"):
            self.assertCode("not_owner", "unregister", a2, n)
        with self.subTest("not_owner from a conn on B"):
            self.assertCode("not_owner", "unregister", b, n)
        with self.subTest("stale with a wrong gen"):
            self.assertCode("stale", "unregister", a1, n, e["gen"] + 1000)
        b.pump(0.05)
        self.assertEqual([x for x in b.notes if x[0] == "down"], [],
                         "a refused unregister fired a down")
        t0 = time.monotonic()
        self.assertIs(a1.call("unregister", n, e["gen"]), True)
        reason_b = b.wait_down(ref_b, 5)
        tb = time.monotonic() - t0
        reason_c = c.wait_down(ref_c, 5)
        note("down after unregister: B %.3fs", tb)
        self.assertEqual(reason_b, "unregistered")
        self.assertEqual(reason_c, "unregistered")
        self.vanishes(b, n)
        self.assertIsNone(whereis(b, n, consistent=True))
        with self.subTest("unregister again: not_found"):
            self.assertCode("not_found", "unregister", a1, n)

    # 5
    def test_05_client_sigkill_down_disconnected(self):
        b, c = self.client(self.B), self.client(self.C)
        n = self.name("child")
        script = (
            "import msgpack, socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "s.sendall(msgpack.packb([0, 1, 'register',"
            " [sys.argv[2], None, {'scope': 'cluster'}]]))\n"
            "u = msgpack.Unpacker(raw=False)\n"
            "while True:\n"
            "    d = s.recv(65536)\n"
            "    if not d: sys.exit(3)\n"
            "    u.feed(d)\n"
            "    for m in u:\n"
            "        if m[0] == 1:\n"
            "            print('ok %d' % m[3]['gen'] if m[2] is None else"
            " 'error %r' % (m[2],), flush=True)\n"
            "            time.sleep(60); sys.exit(0)\n")
        child = subprocess.Popen([sys.executable, "-c", script, self.A.path,
                                  n], stdout=subprocess.PIPE,
                                 preexec_fn=cl._child_setup)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        ready, _, _ = select.select([child.stdout], [], [], WAIT)
        line = child.stdout.readline().decode().strip() if ready else ""
        self.assertTrue(line.startswith("ok "), "the child's register: %r"
                        % line)
        gen = int(line.split()[1])
        self.seen(b, n, gen)
        self.seen(c, n, gen)
        ref_b, ref_c = b.call("monitor", n), c.call("monitor", n)
        t0 = time.monotonic()
        child.kill()
        child.wait()
        reason = b.wait_down(ref_b, 3)
        tb = time.monotonic() - t0
        reason_c = c.wait_down(ref_c, 3)
        tc = time.monotonic() - t0
        note("down after kill -9 of the owner: B %.3fs, C %.3fs", tb, tc)
        self.assertEqual(reason, "disconnected",
                         "B's monitor within 3 s of the SIGKILL (%.2fs)" % tb)
        self.assertEqual(reason_c, "disconnected")
        self.vanishes(b, n, 3)
        self.assertIsNone(whereis(b, n, consistent=True))

    # 10
    def test_10_nodes_hello_stats(self):
        for node in (self.A, self.B, self.C):
            cli = self.client(node)
            with self.subTest("nodes on " + node.name):
                got = cli.call("nodes")
                self.assertEqual([x["name"] for x in got],
                                 ["nodeA", "nodeB", "nodeC"])
                for x in got:
                    self.assertIs(x["self"], x["name"] == node.name, x)
                    self.assertEqual(x["address"], "")
                    self.assertIsInstance(x["since"], int)
                    now_ms = time.time() * 1000
                    self.assertTrue(now_ms - 3600e3 < x["since"]
                                    <= now_ms + 60e3, x)
            with self.subTest("hello on " + node.name):
                h = cli.call("hello")
                self.assertEqual(h.get("node"), node.name)
                self.assertEqual(h["protocol"], 3)
            with self.subTest("stats on " + node.name):
                st = cli.call("stats")["cluster"]
                self.assertEqual(st["node"], node.name)
                self.assertEqual(st["state"], "up")
                self.assertEqual(st["lease_ttl"], TTL)
                self.assertEqual(st["nodes"], 3)
                self.assertIsInstance(st["etcd"], str)
                self.assertIsInstance(st["names"], int)
                self.assertIsInstance(st["revision"], int)
                self.assertGreater(st["revision"], 0)
        with self.subTest("stats names counts the cache"):
            a, b = self.client(self.A), self.client(self.B)
            before = b.call("stats")["cluster"]["names"]
            e = reg_cluster(a, self.name("counted"))
            self.seen(b, self.name("counted"), e["gen"])
            self.assertEqual(b.call("stats")["cluster"]["names"], before + 1)

    # the rest of the contract, cheap to check on the shared nodes
    def test_11_register_options_refused_for_cluster(self):
        a = self.client(self.A)
        for opt in ("replace", "allow_replacement"):
            with self.subTest(opt):
                self.assertCode("bad_request", "register", a,
                                self.name(opt), None,
                                {"scope": "cluster", opt: True})
        with self.subTest("unknown scope"):
            self.assertCode("bad_request", "register", a, self.name("s"),
                            None, {"scope": "galaxy"})

    def test_12_send_same_node_and_other_node(self):
        a1, a2, b = self.client(self.A), self.client(self.A), \
            self.client(self.B)
        n = self.name("inbox")
        e = reg_cluster(a1, n)
        self.seen(b, n, e["gen"])
        with self.subTest("send on the owner's node"):
            self.assertIs(a2.call("send", n, "hi"), True)
            got = a1.wait_note(lambda m, p: m == "message", 5)
            self.assertEqual(got, ("message", [n, a2.conn, "hi"]))
        with self.subTest("send with the right gen on the owner's node"):
            self.assertIs(a2.call("send", n, "gen", {"gen": e["gen"]}), True)
            self.assertCode("stale", "send", a2, n, "x",
                            {"gen": e["gen"] + 1})
        with self.subTest("send from another node: unavailable (part 2)"):
            err = self.assertCode("unavailable", "send", b, n, "hi")
            note("cross-node send: %s", err.message)
        with self.subTest("call from another node: unavailable (part 2)"):
            self.assertCode("unavailable", "call", b, n, "hi")

    def test_13_list_scopes(self):
        a, b = self.client(self.A), self.client(self.B)
        p = self.name("")
        lb = b.call("register", p + "both", "local-on-B")
        ea = reg_cluster(a, p + "both", "cluster-from-A")   # B's local name
        ec = reg_cluster(a, p + "only", "cluster")           # is not A's
        self.seen(b, p + "only", ec["gen"])
        with self.subTest("list default scope is local"):
            got = b.call("list", p)
            self.assertEqual([(x["name"], x.get("scope")) for x in got],
                             [(p + "both", None)])
        with self.subTest("list cluster"):
            got = b.call("list", p, 100, None, {"scope": "cluster"})
            self.assertEqual([(x["name"], x.get("scope"), x.get("node"))
                              for x in got],
                             [(p + "both", "cluster", "nodeA"),
                              (p + "only", "cluster", "nodeA")])
        with self.subTest("list all: local before cluster"):
            got = b.call("list", p, 100, None, {"scope": "all"})
            self.assertEqual([(x["name"], x.get("scope"), x["gen"])
                              for x in got],
                             [(p + "both", None, lb["gen"]),
                              (p + "both", "cluster", ea["gen"]),
                              (p + "only", "cluster", ec["gen"])])
        with self.subTest("whereis any prefers the local name"):
            self.assertEqual(whereis(b, p + "both")["gen"], lb["gen"])
            self.assertEqual(whereis(b, p + "both", scope="cluster")["gen"],
                             ea["gen"])

    def test_14_monitor_absent_cluster_name_noproc(self):
        b = self.client(self.B)
        ref = b.call("monitor", self.name("ghost"))
        self.assertEqual(b.wait_down(ref, 2), "noproc")

    def test_15_close_deletes_keys(self):
        a, b = self.client(self.A), self.client(self.B)
        names = [self.name(str(i)) for i in range(200)]
        for n in names:
            reg_cluster(a, n)
        self.seen(b, names[-1])
        a.close()
        left = eventually(lambda: not ETCD.keys(self.prefix + "names/"
                                                + self.name("")), 5)
        self.assertTrue(left, "keys still in etcd 5 s after the owner "
                        "closed: %d" % len(ETCD.keys(self.prefix + "names/"
                                                     + self.name(""))))
        self.vanishes(b, names[0], 3)


    def _owned(self):
        a1, a2 = self.client(self.A), self.client(self.A)
        b, c = self.client(self.B), self.client(self.C)
        n = self.name("n")
        e = reg_cluster(a1, n, 1)
        self.seen(b, n, e["gen"])
        self.seen(c, n, e["gen"])
        return a1, a2, b, c, n, e

    def test_16_update(self):
        a1, a2, b, c, n, e = self._owned()
        u = a1.call("update", n, 2)
        self.assertEqual((u["value"], u["gen"], u["since"], u["scope"],
                          u["node"]), (2, e["gen"], e["since"], "cluster",
                                       "nodeA"))
        got = eventually(lambda: (whereis(b, n) or {}).get("value") == 2, 5)
        self.assertTrue(got, "B never saw the new value: %r"
                        % whereis(b, n))
        self.assertEqual(whereis(c, n, consistent=True)["value"], 2)
        with self.subTest("not_owner from another conn, another node"):
            self.assertCode("not_owner", "update", a2, n, 3)
            self.assertCode("not_owner", "update", b, n, 3)
        with self.subTest("stale with a wrong gen, ok with the right one"):
            self.assertCode("stale", "update", a1, n, 3, e["gen"] + 1)
            self.assertEqual(a1.call("update", n, 4, e["gen"])["value"], 4)
        self.assertEqual(whereis(b, n, consistent=True)["value"], 4)

    def test_17_evict_from_another_node(self):
        a1, a2, b, c, n, e = self._owned()
        ref = c.call("monitor", n)
        try:
            self.assertIs(b.call("evict", n), True)
        except RPCError as err:
            if err.code == "forbidden":
                self.skipTest("not an administrator of the daemon: %s" % err)
            raise
        self.assertEqual(a1.wait_lost(n, 5), "evicted")
        self.assertEqual(c.wait_down(ref, 5), "evicted")
        self.vanishes(a2, n, 3)
        self.assertIsNone(whereis(b, n, consistent=True))
        self.assertCode("not_found", "evict", b, n)

    def test_18_await_cluster_name(self):
        a, b = self.client(self.A), self.client(self.B)
        n = self.name("later")
        msgid = b.send_request("await", [n, 5000])
        b.pump(0.05)
        e = reg_cluster(a, n, "v")
        got = b.answer(msgid, "await", 6)
        self.assertEqual((got["gen"], got["scope"], got["node"]),
                         (e["gen"], "cluster", "nodeA"))
        with self.subTest("await of a known cluster name: at once"):
            got = b.call("await", n, 0)
            self.assertEqual(got["gen"], e["gen"])
        with self.subTest("await times out"):
            self.assertCode("timeout", "await", b, self.name("never"), 100)


    def test_19_race_for_one_name(self):
        """Fifteen connections on three nodes ask for the same cluster
        name at once, for 20 names: exactly one wins each."""
        conns = [self.client(n) for n in (self.A, self.B, self.C)
                 for _ in range(5)]
        for i in range(20):
            n = self.name(str(i))
            ids = [(c, c.send_request("register", [n, None,
                                                   {"scope": "cluster"}]))
                   for c in conns]
            wins, codes = [], collections.Counter()
            for c, msgid in ids:
                try:
                    wins.append((c, c.answer(msgid, "register")))
                except RPCError as err:
                    codes[err.code] += 1
            self.assertEqual(len(wins), 1, "%s: %d winners, errors %r"
                             % (n, len(wins), dict(codes)))
            self.assertEqual(dict(codes), {"taken": len(conns) - 1})
            gen = wins[0][1]["gen"]
            for c in (conns[0], conns[5], conns[10]):
                self.assertEqual(whereis(c, n, consistent=True)["gen"], gen)

    def test_20_close_while_register_in_flight(self):
        """A connection that closes before its cluster register is
        answered leaves no name behind."""
        b = self.client(self.B)
        names = [self.name(str(i)) for i in range(20)]
        for n in names:
            c = cl.Client(self.A.path)
            c.send_request("register", [n, None, {"scope": "cluster"}])
            c.close()
        t0 = time.monotonic()
        made = set()

        def settled():
            # Quiet for a second (the registers may not have reached
            # etcd yet), then nothing in etcd and nothing in B's cache.
            k = ETCD.keys(self.prefix + "names/" + self.name(""))
            made.update(k)
            return (not k and time.monotonic() - t0 > 1.0 and
                    all(whereis(b, n) is None for n in names))
        ok = eventually(settled, 8, 0.02)
        note("%d of %d registers of closed connections were seen in etcd "
             "before their deletes", len(made), len(names))
        self.assertTrue(ok, "8 s after their owners closed: etcd holds %r, "
                        "B knows %r" % (
                            sorted(ETCD.keys(self.prefix + "names/"
                                             + self.name(""))),
                            [n for n in names if whereis(b, n)]))
        # A's own bookkeeping agrees: the names can be taken again.
        a = self.client(self.A)
        for n in names:
            self.assertEqual(reg_cluster(a, n)["conn"], a.conn)

    def test_21_pipelined_registers(self):
        """300 cluster registers written at once on one connection: each
        answered once, distinct gens, all seen on B; then the connection
        closes and all of them go."""
        a, b = self.client(self.A), self.client(self.B)
        names = [self.name("%03d" % i) for i in range(300)]
        ids = {a.send_request("register", [n, i, {"scope": "cluster"}]): n
               for i, n in enumerate(names)}
        got = {}
        deadline = time.monotonic() + 20
        while len(got) < len(ids):
            msg = a._read(deadline)
            if msg[0] == 2:
                continue
            self.assertIn(msg[1], ids)
            self.assertNotIn(msg[1], got, "answered twice")
            self.assertIsNone(msg[2], "register %s: %r" % (ids[msg[1]],
                                                           msg[2]))
            got[msg[1]] = msg[3]
        gens = [e["gen"] for e in got.values()]
        self.assertEqual(len(set(gens)), len(gens))
        # Each register has an etcd connection of its own: etcd commits
        # them in any order, and the last name may show before others.
        last = [None]

        def listed():
            last[0] = b.call("list", self.name(""), 1000, None,
                             {"scope": "cluster"})
            return [x["name"] for x in last[0]] == names
        self.assertTrue(eventually(listed, 5), "B lists %d of the 300 "
                        "names 5 s after their registers were answered"
                        % len(last[0]))
        self.assertEqual(sorted(x["gen"] for x in last[0]), sorted(gens))
        a.close()
        gone = eventually(lambda: b.call("list", self.name(""), 1000, None,
                                         {"scope": "cluster"}) == [], 5)
        self.assertTrue(gone, "B still lists names 5 s after their owner "
                        "closed")

    def test_22_odd_names_and_big_values(self):
        a, b = self.client(self.A), self.client(self.B)
        for n in ("\u00fc/\u00f1 \u2603", "x" * 200 + "\u00e9" * 27,
                  self.name("a\nb"), "%" * 255):
            with self.subTest(repr(n)[:40]):
                e = reg_cluster(a, n, "v")
                got = self.seen(b, n, e["gen"])
                self.assertEqual(got["name"], n)
                self.assertIs(a.call("unregister", n), True)
        for size in (100000, 900000):
            with self.subTest("value of %d bytes" % size):
                n = self.name("big%d" % size)
                v = b"\xab" * size
                try:
                    e = reg_cluster(a, n, v)
                except RPCError as err:
                    note("cluster register of a %d-byte value: %s (%s)",
                         size, err.code, err.message)
                    self.assertTrue(self.A.alive())
                    self.assertIsNone(whereis(b, n, consistent=True))
                    continue
                got = self.seen(b, n, e["gen"])
                self.assertEqual(got["value"], v)
                note("cluster register of a %d-byte value: ok", size)

    def acquired(self, client, name, timeout=5):
        note = client.wait_note(lambda m, p: m == "acquired" and
                                p[0] == name, timeout)
        return None if note is None else note[1][1]

    def test_23_queue_across_nodes(self):
        a, b, c = self.client(self.A), self.client(self.B), \
            self.client(self.C)
        b2 = self.client(self.B)
        n = self.name("lock")
        q = {"scope": "cluster", "queue": True}
        e0 = a.call("register", n, "a", q)
        self.assertEqual((e0["node"], e0["scope"]), ("nodeA", "cluster"))
        self.assertEqual(b.call("register", n, "b", q), {"queued": 1})
        self.assertEqual(c.call("register", n, "c", q), {"queued": 2})
        self.assertEqual(b2.call("register", n, "b2", q), {"queued": 3})
        line = [{"node": "nodeB", "conn": b.conn},
                {"node": "nodeC", "conn": c.conn},
                {"node": "nodeB", "conn": b2.conn}]
        for cli in (a, b, c):
            with self.subTest("queue on conn %d" % cli.conn):
                got = eventually(lambda: cli.call("queue", n) == line
                                 and line, 3)
                self.assertEqual(got, line, cli.call("queue", n))
        with self.subTest("taken without queue"):
            self.assertCode("taken", "register", self.client(self.C), n,
                            None, {"scope": "cluster"})
        with self.subTest("a waiter gives up its place"):
            self.assertIs(b2.call("unregister", n), True)
            self.assertTrue(eventually(lambda: c.call("queue", n)
                                       == line[:2], 3), c.call("queue", n))
        ref = c.call("monitor", n)
        self.assertIs(a.call("unregister", n), True)
        e1 = self.acquired(b, n)
        self.assertIsNotNone(e1, "B's head of line never got acquired")
        self.assertEqual((e1["node"], e1["conn"], e1["value"]),
                         ("nodeB", b.conn, "b"))
        self.assertGreater(e1["gen"], e0["gen"])
        self.assertEqual(c.wait_down(ref, 3), "unregistered")
        self.seen(c, n, e1["gen"])
        with self.subTest("the next waiter takes it when the owner "
                          "closes"):
            b.close()
            e2 = self.acquired(c, n)
            self.assertIsNotNone(e2)
            self.assertEqual((e2["node"], e2["value"]), ("nodeC", "c"))
            self.assertGreater(e2["gen"], e1["gen"])
            self.seen(a, n, e2["gen"])
            self.assertEqual(c.call("queue", n), [])

class Test02NoEtcd(ClusterCase):
    """A daemon without --etcd answers cluster requests unavailable."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.N = h.node("single")
        cls.N.wait_accepting()

    def test_unavailable_without_etcd(self):
        c = self.client(self.N)
        self.assertCode("unavailable", "nodes", c)
        self.assertCode("unavailable", "register", c, "n", None,
                        {"scope": "cluster"})
        h = c.call("hello")
        self.assertNotIn("node", h)
        self.assertEqual(h["protocol"], 3)
        self.assertNotIn("cluster", c.call("stats"))
        self.assertIsNotNone(c.call("register", "n"))   # local still works


class Test06NodeDeath(ClusterCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.A, cls.B, cls.C = h.nodes_up(["nodeA", "nodeB", "nodeC"], ETCD,
                                         ttl=TTL)
        cls.prefix = h.nodes[0].argv[h.nodes[0].argv.index(
            "--cluster-prefix") + 1]

    def test_06a_same_node_name_refused(self):
        """DESIGN.md and cluster.h: a second live daemon with a node name
        already in use is refused (the daemon exits)."""
        t0 = time.monotonic()
        dup = self.harness.node("nodeB", ETCD, self.prefix, TTL)
        code = eventually(lambda: dup.proc.poll(), WAIT)
        note("a second nodeB: exit status %r after %.2fs (PROTOCOL.md: it "
             "waits one TTL, %ds)", code, time.monotonic() - t0, TTL)
        self.assertIsNotNone(code, "a second daemon named nodeB still runs "
                             "after %gs:\n%s" % (WAIT, dup.log_tail()))
        self.assertNotEqual(code, 0)
        b = self.client(self.B)
        self.assertEqual([x["name"] for x in b.call("nodes")].count("nodeB"),
                         1)
        self.assertEqual(b.call("stats")["cluster"]["state"], "up")
        self.assertEqual(reg_cluster(b, self.name("still"))["node"], "nodeB")

    def test_06b_sigterm_revokes_names(self):
        """PROTOCOL.md 12: a daemon that stops normally (SIGTERM) revokes
        its lease: its names go at once, with nodedown.  The node has a
        TTL of 10 s, so that a down within 3 s is the revoke's doing."""
        d = self.harness.node("nodeD", ETCD, self.prefix, 10)
        d.wait_up()
        dc, b = self.client(d), self.client(self.B)
        n = self.name("n")
        e = reg_cluster(dc, n)
        self.seen(b, n, e["gen"])
        ref = b.call("monitor", n)
        t0 = time.monotonic()
        code = d.stop()
        reason = b.wait_down(ref, TTL + 3)
        took = time.monotonic() - t0
        note("down after SIGTERM of its node: %r after %.2fs (TTL 10)",
             reason, took)
        self.assertEqual(code, 0, d.log_tail())
        self.assertEqual(reason, "nodedown", "no down within 3 s of the "
                         "SIGTERM (TTL 10 s): was the lease revoked?")
        self.assertLessEqual(took, 3.0)
        self.assertIsNone(whereis(b, n))

    def test_06c_restart_after_sigkill(self):
        """A node killed with SIGKILL and started again at once (its old
        lease still alive) comes up once the old key has expired."""
        e = self.harness.node("nodeE", ETCD, self.prefix, TTL)
        e.wait_up()
        c = self.client(e)
        reg_cluster(c, self.name("old"))
        e.kill9()
        t0 = time.monotonic()
        again = self.harness.node("nodeE", ETCD, self.prefix, TTL)
        again.wait_up(TTL + 5)
        note("nodeE up again %.2fs after its restart (TTL %d)",
             time.monotonic() - t0, TTL)
        c2 = self.client(again)
        self.assertIsNone(whereis(c2, self.name("old"), consistent=True))
        self.assertEqual(reg_cluster(c2, self.name("old"))["node"], "nodeE")
        self.assertIn("nodeE", [x["name"] for x in c2.call("nodes")])

    # 6
    def test_06_daemon_sigkill_nodedown(self):
        a, b, c = self.client(self.A), self.client(self.B), \
            self.client(self.C)
        n1, n2 = self.name("1"), self.name("2")
        e1, e2 = reg_cluster(a, n1), reg_cluster(a, n2)
        for cli in (b, c):
            self.seen(cli, n1, e1["gen"])
            self.seen(cli, n2, e2["gen"])
        refs_b = [b.call("monitor", n1), b.call("monitor", n2)]
        waiter = self.client(self.C)
        n3 = self.name("3")
        e3 = reg_cluster(a, n3)
        self.assertEqual(waiter.call("register", n3, "w", {
            "scope": "cluster", "queue": True}), {"queued": 1})
        ref_c = c.call("monitor", n1)
        t0 = time.monotonic()
        self.A.kill9()
        bound = TTL + 3
        reasons = [b.wait_down(r, bound - (time.monotonic() - t0))
                   for r in refs_b]
        tb = time.monotonic() - t0
        reason_c = c.wait_down(ref_c, max(0.1, bound -
                                          (time.monotonic() - t0)))
        tc = time.monotonic() - t0
        note("nodedown after kill -9 of daemon A (TTL %d): B %.2fs, C %.2fs",
             TTL, tb, tc)
        self.assertEqual(reasons, ["nodedown", "nodedown"],
                         "B's downs within TTL + 3 s (%.2fs)" % tb)
        self.assertEqual(reason_c, "nodedown")
        for cli in (b, c):
            self.assertIsNone(whereis(cli, n1))
            self.assertIsNone(whereis(cli, n2))
        names = eventually(lambda: [x["name"] for x in b.call("nodes")]
                           if "nodeA" not in [x["name"] for x in
                                              b.call("nodes")] else None, 3)
        self.assertEqual(names, ["nodeB", "nodeC"])
        self.assertEqual(b.call("stats")["cluster"]["nodes"], 2)
        with self.subTest("a waiter on C acquires the dead node's name"):
            got = waiter.wait_note(lambda m, p: m == "acquired"
                                   and p[0] == n3, 3)
            self.assertIsNotNone(got, "no acquired on C")
            self.assertEqual(got[1][1]["node"], "nodeC")
            self.assertGreater(got[1][1]["gen"], e3["gen"])
        with self.subTest("the name is free again"):
            e = reg_cluster(c, n1)
            self.assertGreater(e["gen"], e2["gen"])
            self.assertEqual(e["node"], "nodeC")


class Test07Partition(ClusterCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.A, cls.B = h.nodes_up(["nodeA", "nodeB"], ETCD, ttl=TTL)
        cls.prefix = h.nodes[0].argv[h.nodes[0].argv.index(
            "--cluster-prefix") + 1]

    # 7
    def test_07_sigstop_longer_than_ttl(self):
        a1, a2 = self.client(self.A), self.client(self.A)
        b1, b2 = self.client(self.B), self.client(self.B)
        n = self.name("leader")
        e1 = reg_cluster(a1, n, "A")
        g1 = e1["gen"]
        self.seen(b1, n, g1)
        ref = b1.call("monitor", n)
        ref_a = a2.call("monitor", n)
        bq, aw = self.client(self.B), self.client(self.A)
        nq = self.name("q")
        reg_cluster(bq, nq)
        self.assertEqual(aw.call("register", nq, None, {
            "scope": "cluster", "queue": True}), {"queued": 1})
        asub = self.client(self.A)
        sub = asub.call("subscribe", self.name(""), {"scope": "cluster"})
        t0 = time.monotonic()
        self.A.pause()
        try:
            # B takes the name once A's lease has expired in etcd.
            last = [None]

            def take():
                try:
                    return reg_cluster(b2, n, "B")
                except RPCError as err:
                    last[0] = err.code
                    return None
            e2 = eventually(take, TTL + 3, 0.05)
            took = time.monotonic() - t0
            note("B took the name %.2fs after SIGSTOP of A (TTL %d)", took,
                 TTL)
            self.assertIsNotNone(e2, "B could not take the name within TTL "
                                 "+ 3 s of A's stop (last error %s)"
                                 % last[0])
            g2 = e2["gen"]
            self.assertGreater(g2, g1)
            self.assertEqual(e2["node"], "nodeB")
            self.assertEqual(b1.wait_down(ref, 2), "nodedown")
            rest = TTL + 2 - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(rest)        # the scenario: stopped > TTL + 2 s
        finally:
            self.A.resume()
        # Right after SIGCONT, A must not answer that A still holds it.
        answers = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            got = whereis(a2, n)
            answers.append(got)
            if got and got.get("gen") == g2 and not got.get("stale"):
                break
            time.sleep(0.02)
        beliefs = [x for x in answers if x and x.get("gen") == g1
                   and not x.get("stale")]
        note("whereis on A after SIGCONT: %d answers, first %r, last %r",
             len(answers), answers[0], answers[-1])
        with self.subTest("A never answers its old entry as current"):
            self.assertEqual(beliefs, [], "A answered the old owner's entry "
                             "(gen %d) without stale after B took the name "
                             "(gen %d)" % (g1, g2))
        with self.subTest("the old owner gets lost nodedown"):
            self.assertEqual(a1.wait_lost(n, 5), "nodedown")
        with self.subTest("A's waiter in a line: lost nodedown"):
            self.assertEqual(aw.wait_lost(nq, 5), "nodedown")
            self.assertEqual(whereis(bq, nq, consistent=True)["node"],
                             "nodeB")
            self.assertEqual(bq.call("queue", nq), [])
        with self.subTest("A's own monitor of the name: nodedown"):
            self.assertEqual(a2.wait_down(ref_a, 5), "nodedown")
        with self.subTest("A shows B's entry after recovery"):
            got = answers[-1]
            self.assertIsNotNone(got)
            self.assertEqual((got.get("gen"), got.get("node")),
                             (g2, "nodeB"), got)
        with self.subTest("the old owner's fenced unregister fails"):
            try:
                r = a1.call("unregister", n, g1)
                self.fail("unregister [name, old gen] answered %r" % r)
            except RPCError as err:
                note("old owner's unregister with its gen: %s", err.code)
            try:
                r = a1.call("unregister", n)
                self.fail("unregister [name] by the old owner answered %r"
                          % r)
            except RPCError as err:
                note("old owner's unregister: %s", err.code)
        with self.subTest("B still holds it, in etcd too"):
            self.assertEqual(whereis(b1, n, consistent=True)["gen"], g2)
            kv = ETCD.keys(self.prefix + "names/" + n)
            self.assertEqual([int(v["create_revision"])
                              for v in kv.values()], [g2])
        with self.subTest("A comes back up with a new lease"):
            st = self.A.wait_state(lambda s: s == "up")
            self.assertEqual(st, "up", "A's state after SIGCONT")
            e3 = reg_cluster(a2, self.name("after"))
            self.assertEqual(e3["node"], "nodeA")
        with self.subTest("A's cluster subscription ends with overflow, "
                          "and resumes with a fresh snapshot"):
            # A read the cluster again after its loss: what it missed
            # meanwhile cannot be told event by event (PROTOCOL.md 12).
            ov = asub.wait_note(lambda m, p: m == "overflow" and
                                p[0] == sub["sub"], 5)
            self.assertIsNotNone(ov, "no overflow on A's subscription "
                                 "(notes %r)" % list(asub.notes))
            again = asub.call("subscribe", self.name(""), {
                "scope": "cluster", "since": ov[1][1]})
            self.assertIs(again["gap"], True, again)
            self.assertIn(n, [x["name"] for x in again["entries"]])


    def test_07b_lease_revoked_in_etcd(self):
        """The node learns from etcd (not from its own clock) that its
        lease is gone, here revoked behind its back: owners and waiters
        alike are told lost nodedown (PROTOCOL.md 12: "a node that loses
        its lease tells its connections that were waiting lost [name,
        nodedown]: their places are gone")."""
        self.A.wait_state(lambda s: s == "up")
        a1, aw = self.client(self.A), self.client(self.A)
        bq = self.client(self.B)
        own, nq = self.name("own"), self.name("q")
        reg_cluster(a1, own)
        reg_cluster(bq, nq)
        self.assertEqual(aw.call("register", nq, None, {
            "scope": "cluster", "queue": True}), {"queued": 1})
        lease = ETCD.keys(self.prefix + "nodes/")[
            self.prefix + "nodes/nodeA"]["lease"]
        ETCD.members[0].api("/v3/lease/revoke", {"ID": lease})
        with self.subTest("the owner"):
            self.assertEqual(a1.wait_lost(own, 5), "nodedown")
        with self.subTest("the waiter"):
            self.assertEqual(aw.wait_lost(nq, 3), "nodedown",
                             "the waiter's place went with the lease, but "
                             "it was not told (notes: %r; etcd's line: %r)"
                             % (list(aw.notes), bq.call("queue", nq)))
        self.assertEqual(self.A.wait_state(lambda s: s == "up"), "up")


class Test08EtcdDown(ClusterCase):
    TIMEOUT_MS = 1000

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness(shared=False)
        cls.etcd = h.etcd(1)
        cls.A, cls.B = h.nodes_up(["nodeA", "nodeB"], cls.etcd, ttl=TTL,
                                  etcd_timeout=cls.TIMEOUT_MS)

    # 8
    def test_08_etcd_stopped_then_restarted(self):
        a1, a2 = self.client(self.A), self.client(self.A)
        b = self.client(self.B)
        member = self.etcd.members[0]
        before = self.name("before")
        reg_cluster(a1, before)
        member.pause()
        try:
            t0 = time.monotonic()
            try:
                r = reg_cluster(a2, self.name("during"), timeout=WAIT)
                code = "success %r" % r
            except RPCError as err:
                code = err.code
            took = time.monotonic() - t0
            note("cluster register with etcd stopped: %s after %.2fs "
                 "(etcd-timeout %d ms)", code, took, self.TIMEOUT_MS)
            with self.subTest("cluster register: unavailable in time"):
                self.assertEqual(code, "unavailable")
                self.assertLessEqual(took, self.TIMEOUT_MS / 1000 + 1.5)
            with self.subTest("local names still work"):
                loc = a2.call("register", self.name("local"), timeout=2)
                self.assertEqual(whereis(a2, self.name("local"))["gen"],
                                 loc["gen"])
                a2.call("unregister", self.name("local"), timeout=2)
            with self.subTest("consistent whereis: unavailable in time"):
                t0 = time.monotonic()
                self.assertCode("unavailable", "whereis", a2, before,
                                {"consistent": True})
                took = time.monotonic() - t0
                self.assertLessEqual(took, self.TIMEOUT_MS / 1000 + 1.5)
            with self.subTest("whereis from the cache still answers"):
                got = whereis(b, before)
                note("cached whereis on B with etcd stopped: %r", got)
            with self.subTest("the owner hears lost nodedown after TTL"):
                self.assertEqual(a1.wait_lost(before, TTL + 3), "nodedown")
            with self.subTest("stats state is no longer up"):
                st = self.A.wait_state(lambda s: s != "up", 3)
                note("A's state with etcd stopped: %r", st)
                self.assertIn(st, ("lost", "joining"))
        finally:
            member.kill()           # SIGKILL works on a stopped process
        member.restart()
        self.assertTrue(eventually(member.answers, 15, 0.1),
                        "etcd did not come back:\n" + member.log_tail())
        t0 = time.monotonic()
        last = [None]

        def works():
            try:
                return reg_cluster(a2, self.name("after"))
            except RPCError as err:
                last[0] = err.code
                return None
        e = eventually(works, 15, 0.1)
        note("cluster register works again %.2fs after etcd answered",
             time.monotonic() - t0)
        self.assertIsNotNone(e, "no cluster register succeeded on A within "
                             "15 s of etcd's restart (last: %s)" % last[0])
        self.seen(b, self.name("after"), e["gen"])
        self.assertEqual(self.B.wait_state(lambda s: s == "up", 15), "up")


    def test_08b_timed_out_register_is_undone(self):
        """PROTOCOL.md 12: "a name a timed-out register did create is
        deleted again by its node".  etcd is stopped for less than the
        TTL (5 s here) while a register waits, and continued, so the
        transaction may still be applied after the daemon said
        unavailable: the name must not stay held by nobody's belief."""
        member = self.etcd.members[0]
        self.assertTrue(eventually(member.answers, 15, 0.1))
        h = self.harness
        C, D = h.nodes_up(["nodeC", "nodeD"], self.etcd, ttl=5,
                          etcd_timeout=self.TIMEOUT_MS)
        prefix = C.argv[C.argv.index("--cluster-prefix") + 1]
        c1, c2, d = self.client(C), self.client(C), self.client(D)
        keep = self.name("keep")
        reg_cluster(c1, keep)
        outcomes = []
        appeared = []
        resumed = 0.0
        for i in range(3):
            n = self.name("n%d" % i)
            # etcd runs 2.5 s between stops (more than a keepalive period
            # of TTL/3 plus the etcd timeout): each stop alone is shorter
            # than the TTL, and so is any stretch without a keepalive.
            rest = resumed + 2.5 - time.monotonic()
            if rest > 0:
                time.sleep(rest)
            member.pause()
            try:
                t0 = time.monotonic()
                try:
                    r = reg_cluster(c2, n, timeout=WAIT)
                    outcomes.append(("success", r["gen"]))
                except RPCError as err:
                    outcomes.append((err.code, err.message))
                took = time.monotonic() - t0
                rest = 1.5 - (time.monotonic() - t0)
                if rest > 0:
                    time.sleep(rest)
            finally:
                member.resume()
                resumed = time.monotonic()
            self.assertLessEqual(took, self.TIMEOUT_MS / 1000 + 1.5)
            seen = eventually(lambda: n in [k[len(prefix + "names/"):]
                                            for k in self.etcd.keys(
                                                prefix + "names/")], 0.5)
            appeared.append(bool(seen))
            if outcomes[-1][0] == "success":
                continue
            gone = eventually(lambda: not self.etcd.keys(prefix + "names/"
                                                         + n)
                              and whereis(d, n) is None, 5, 0.05)
            self.assertTrue(gone, "register of %r answered %r, yet 5 s "
                            "later etcd has %r and D says %r"
                            % (n, outcomes[-1],
                               self.etcd.keys(prefix + "names/" + n),
                               whereis(d, n)))
        note("registers with etcd stopped 1.5 s: %r; key seen in etcd "
             "after etcd continued: %r", outcomes, appeared)
        c1.pump(0.05)
        self.assertEqual([x for x in c1.notes if x[0] == "lost"], [],
                         "a stop shorter than the TTL lost a name")
        self.assertEqual(whereis(d, keep)["node"], "nodeC")


class Test09LeaderKill(ClusterCase):
    LEASE = 5          # a leader election must not look like a partition

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness(shared=False)
        try:
            cls.etcd = h.etcd(3)
        except AssertionError as e:
            raise unittest.SkipTest("a three-member etcd did not start on "
                                    "loopback: %s" % str(e)[:500])
        cls.nodes = h.nodes_up(["nodeA", "nodeB", "nodeC"], cls.etcd,
                               ttl=cls.LEASE)
        cls.prefix = h.nodes[0].argv[h.nodes[0].argv.index(
            "--cluster-prefix") + 1]

    # 9
    def test_09_leader_killed_nothing_lost(self):
        A, B, C = self.nodes
        clients = [self.client(A), self.client(C)]
        held = {}          # register answered success, not unregistered
        gone = set()       # unregister answered true
        unsure = {}        # unregister failed: outcome unknown
        failed = {}        # register answered an error
        leader = self.etcd.leader()
        self.assertIsNotNone(leader, "no etcd leader found")
        t0 = time.monotonic()
        killed = None
        after = 0
        i = 0
        while True:
            now = time.monotonic()
            if killed is None and now - t0 > 0.5:
                leader.kill()
                killed = now
            if killed and after >= 20 and now - killed > 2:
                break
            if now - t0 > 25:
                break
            cli = clients[i % 2]
            n = "t9/%04d" % i
            i += 1
            try:
                e = reg_cluster(cli, n, i)
            except RPCError as err:
                failed[n] = (cli, err.code)
                time.sleep(0.02)
                continue
            held[n] = e["gen"]
            if killed:
                after += 1
            if i % 3 == 0:
                try:
                    cli.call("unregister", n, e["gen"])
                    gone.add(n)
                except RPCError as err:
                    unsure[n] = err.code
                del held[n]
        codes = collections.Counter(c for _, c in failed.values())
        note("leader %s killed; %d registers: %d held, %d unregistered, "
             "%d unregister failed %r, register errors %r, %d successes "
             "after the kill", leader.name, i, len(held), len(gone),
             len(unsure), dict(collections.Counter(unsure.values())),
             dict(codes), after)
        self.assertGreaterEqual(after, 1, "no cluster register succeeded in "
                                "25 s after the etcd leader was killed")
        checkers = [self.client(n) for n in self.nodes]

        def missing():
            out = []
            for node, cli in zip(self.nodes, checkers):
                for n, g in held.items():
                    got = whereis(cli, n)
                    if not got or got.get("gen") != g:
                        out.append((node.name, n, g, got))
                for n in gone:
                    got = whereis(cli, n)
                    if got is not None:
                        out.append((node.name, n, "gone", got))
            return out
        left = eventually(lambda: not missing(), WAIT, 0.2)
        with self.subTest("every held name on every node, no unregistered "
                          "one"):
            self.assertTrue(left, "after 10 s: %r" % missing()[:10])
        with self.subTest("etcd holds exactly the held names"):
            keys = self.etcd.keys(self.prefix + "names/t9/")
            got = {k[len(self.prefix + "names/"):]:
                   int(v["create_revision"]) for k, v in keys.items()}
            for n, g in held.items():
                self.assertEqual(got.get(n), g, n)
            for n in gone:
                self.assertNotIn(n, got)
            phantom = {n: failed[n][1] for n in failed if n in got}
            note("names whose register failed but are in etcd: %r", phantom)
        with self.subTest("a register answered with an error holds nothing"):
            self.assertEqual(phantom, {}, "register answered an error, yet "
                             "the name is held (by the caller's conn?)")


class Test11FakeEtcd(ClusterCase):
    """Bad answers from etcd: each variant is a node behind its own
    FakeEtcd relaying to the module's etcd.  Variants that spoil every
    path are armed from the start (the node never joins); those that
    spoil one path are armed once the node is up (bad answers in the
    middle of a session).  Then every fake turns good again and every
    node must come up without a restart."""
    TIMEOUT_MS = 1000
    VARIANTS = dict(
        [(k, (k, None)) for k in (
            "garbage", "wrong_types", "http_error", "huge_length",
            "huge_chunk", "truncated_chunk", "oversize", "deep_json",
            "slowloris")] + [
            ("watch_created_truncated", ("created_truncated",
                                         ["/v3/watch"])),
            ("watch_created_wrong_types", ("created_wrong_types",
                                           ["/v3/watch"])),
            ("watch_huge_chunk", ("huge_chunk", ["/v3/watch"])),
            ("watch_garbage", ("garbage", ["/v3/watch"])),
            ("range_garbage", ("garbage", ["/v3/kv/range"])),
            ("range_deep_json", ("deep_json", ["/v3/kv/range"])),
            ("txn_wrong_types", ("wrong_types", ["/v3/kv/txn"])),
            ("txn_truncated_chunk", ("truncated_chunk", ["/v3/kv/txn"])),
            ("txn_slowloris", ("slowloris", ["/v3/kv/txn"])),
            ("keepalive_garbage", ("garbage", ["/v3/lease/keepalive"])),
            ("keepalive_huge_length", ("huge_length",
                                       ["/v3/lease/keepalive"])),
        ])

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.fakes = {}
        cls.nodes = {}
        for label, (kind, only) in cls.VARIANTS.items():
            fake = cl.FakeEtcd(kind, ETCD.members[0], only,
                               armed=only is None)
            cls.addClassCleanup(fake.stop)
            cls.fakes[label] = fake
            cls.nodes[label] = h.node(label.replace("_", "-"), fake.url,
                                      h.new_prefix(), TTL,
                                      etcd_timeout=cls.TIMEOUT_MS)
        cls.pre = {}
        for label, node in cls.nodes.items():
            if cls.VARIANTS[label][1] is None:
                node.wait_accepting()
            else:
                # Up, with a cluster name held, before the bad answers.
                node.wait_up()
                pre = node.client()
                cls.addClassCleanup(pre.close)
                reg_cluster(pre, "pre/" + label)
                cls.pre[label] = pre
                cls.fakes[label].arm()
        cls.cpu0 = {m: cls.cpu(n) for m, n in cls.nodes.items()}
        cls.t0 = time.monotonic()
        # Long enough for several bad answers and one timeout each.
        eventually(lambda: all(f.bad >= 2 for f in cls.fakes.values()),
                   3 * cls.TIMEOUT_MS / 1000, 0.1)
        rest = 2.5 * cls.TIMEOUT_MS / 1000 - (time.monotonic() - cls.t0)
        if rest > 0:
            time.sleep(rest)

    @staticmethod
    def cpu(node):
        """The process's user + system CPU seconds."""
        try:
            with open("/proc/%d/stat" % node.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / \
                os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            return float("nan")

    def test_11a_bad_answers(self):
        wall = time.monotonic() - self.t0
        for label, node in self.nodes.items():
            fake = self.fakes[label]
            only = self.VARIANTS[label][1]
            with self.subTest(label):
                self.assertTrue(node.alive(), "the daemon died: %s\n%s"
                                % (node.proc.returncode, node.log_tail()))
                c = self.client(node, 5)
                loc = c.call("register", "local/" + label)
                self.assertEqual(whereis(c, "local/" + label)["gen"],
                                 loc["gen"])
                t0 = time.monotonic()
                try:
                    r = reg_cluster(c, "cl/" + label)
                    outcome = "success"
                except RPCError as err:
                    outcome, r = err.code, err.message
                took = time.monotonic() - t0
                try:
                    cons = whereis(c, "cl/" + label, consistent=True)
                    cons = "entry" if cons else "nil"
                except RPCError as err:
                    cons = err.code
                cached = whereis(c, "cl/" + label)
                cpu = self.cpu(node) - self.cpu0[label]
                state = c.call("stats")["cluster"]["state"]
                lost = None
                if label in self.pre:
                    lost = self.pre[label].wait_lost(
                        "pre/" + label, 3 if "keepalive" in label else 0.2)
                note("%-26s bad %3d %-70s state %-7s cluster register %s "
                     "in %.2fs (%s); consistent whereis %s; cached %s; "
                     "lost %s; cpu %.2fs of %.1fs", label, fake.bad,
                     dict(fake.requests), state, outcome, took,
                     r if outcome != "success" else r.get("node"), cons,
                     None if cached is None else
                     "stale" if cached.get("stale") else "entry",
                     lost, cpu, wall)
                self.assertGreater(fake.bad, 0, "the daemon never got a bad "
                                   "answer (requests: %r)"
                                   % dict(fake.requests))
                self.assertLessEqual(took, self.TIMEOUT_MS / 1000 + 1.5)
                if only is None or only == ["/v3/kv/txn"]:
                    # No lease, or no write it can trust.
                    self.assertEqual(outcome, "unavailable")
                else:
                    self.assertIn(outcome, ("success", "unavailable"))
                if only is None:
                    self.assertNotEqual(state, "up")
                if only == ["/v3/kv/range"]:
                    self.assertEqual(cons, "unavailable")
                else:
                    self.assertIn(cons, ("entry", "nil", "unavailable"))
                if label in self.pre:
                    # Keepalives spoiled for longer than the TTL: the
                    # node stops believing; otherwise the lease is fine.
                    self.assertEqual(lost, "nodedown" if "keepalive" in
                                     label else None)
                self.assertLess(cpu, wall / 2, "the daemon spins against "
                                "a bad etcd")
                self.assertIsNone(whereis(c, "nobody/" + label))
                self.assertTrue(node.alive())

    def test_11b_recovers_when_etcd_answers_well_again(self):
        for fake in self.fakes.values():
            fake.disarm()
        t0 = time.monotonic()
        for label, node in self.nodes.items():
            with self.subTest(label):
                self.assertTrue(node.alive(), node.log_tail())
                st = node.wait_state(lambda s: s == "up", 20)
                self.assertEqual(st, "up", "not up again 20 s after etcd "
                                 "answered well")
                c = self.client(node, 5)
                last = [None]

                def works():
                    try:
                        return reg_cluster(c, "after/" + label)
                    except RPCError as err:
                        last[0] = err
                        return None
                e = eventually(works, 5, 0.1)
                self.assertIsNotNone(e, "cluster register after recovery: "
                                     "%s" % last[0])
                self.assertEqual(whereis(c, "after/" + label,
                                         consistent=True)["gen"], e["gen"])
        note("every node up again %.2fs after the fakes turned good",
             time.monotonic() - t0)


class Test12SpecReplay(ClusterCase):
    """PROTOCOL.md's ```msgpack-cluster examples (§4.24, §12), replayed
    byte for byte as tests/check_spec.c replays the plain ones: clients A
    and B on node n1, C and D on node n2, two nodes on one etcd under a
    fresh prefix, started afresh for each block (the blocks expect the
    first connections' ids and exactly the nodes n1 and n2).  Values that
    differ from run to run compare by type only, as in check_spec.c, and
    so does gen (an etcd revision).  No read is retried: before a line
    that sends on one node after a write on the other, the replay waits
    (on a control connection of its own, opened after the block's
    clients) until the sending node's cluster revision has reached the
    writer's, itself caught up with etcd's.  The etcd is this class's
    alone, so that every revision of it is under the nodes' prefix."""
    LOOSE = cl.SPEC_LOOSE | {"gen"}
    NODE_OF = {"A": "n1", "B": "n1", "C": "n2", "D": "n2"}
    # Requests that may write to etcd.
    WRITES = {"register", "register_many", "unregister", "update", "evict",
              "join", "leave"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness(shared=False)
        cls.etcd = h.etcd(1)
        cls.blocks = cl.spec_blocks("msgpack-cluster")

    def test_12_spec_cluster_examples(self):
        self.assertGreaterEqual(len(self.blocks), 2, "PROTOCOL.md has "
                                "fewer msgpack-cluster blocks than §4.24's "
                                "and §12's")
        counts = collections.Counter()
        t0 = time.monotonic()
        for lineno, lines in self.blocks:
            with self.subTest("PROTOCOL.md:%d" % lineno):
                self.replay(lineno, lines, counts)
        note("replayed %d msgpack-cluster blocks: %d sends, %d receives, "
             "%d waits for a revision, in %.2fs", len(self.blocks),
             counts[">"], counts["<"], counts["sync"],
             time.monotonic() - t0)
        self.assertGreaterEqual(counts[">"], 10)
        self.assertGreaterEqual(counts["<"], 10)

    def where(self, line):
        return "PROTOCOL.md:%d: %s" % (line.lineno, line.text)

    def replay(self, lineno, lines, counts):
        h = self.harness
        prefix = h.new_prefix()
        for ln in lines:
            self.assertIn(ln.client, self.NODE_OF, "%s: the cluster "
                          "examples define clients A-D only"
                          % self.where(ln))
        nodes = {name: h.node(name, self.etcd, prefix, TTL)
                 for name in ("n1", "n2")}
        clients, ctl = {}, {}
        try:
            # The block's clients first, in the order of their first
            # line (check_spec.c connects each at its first use): the
            # ids they get are those the block expects.
            for ln in lines:
                if ln.client not in clients:
                    clients[ln.client] = cl.RawClient(
                        nodes[self.NODE_OF[ln.client]].path)
            for name, n in nodes.items():
                ctl[name] = cl.Client(n.path, 3.0, wait=WAIT)

            def ready():
                return all(c.call("stats")["cluster"]["state"] == "up" and
                           [x["name"] for x in c.call("nodes")] ==
                           ["n1", "n2"] for c in ctl.values())
            self.assertTrue(eventually(ready, WAIT, 0.05),
                            "n1 and n2 not up and seeing each other: %r"
                            % {k: c.call("nodes") for k, c in ctl.items()})

            def rev(name):
                return ctl[name].call("stats")["cluster"]["revision"]

            def sync(reader, writer, line):
                target = self.etcd.revision()
                got = eventually(lambda: rev(writer) >= target, WAIT)
                self.assertTrue(got, "%s: the writer %s's revision %d never "
                                "reached etcd's %d" % (self.where(line),
                                                      writer, rev(writer),
                                                      target))
                wrev = rev(writer)
                got = eventually(lambda: rev(reader) >= wrev, WAIT)
                self.assertTrue(got, "%s: %s's revision %d never reached "
                                "%s's %d" % (self.where(line), reader,
                                             rev(reader), writer, wrev))
                counts["sync"] += 1

            behind = {name: set() for name in nodes}   # writers unseen
            for ln in lines:
                node = self.NODE_OF[ln.client]
                c = clients.get(ln.client)
                if ln.op == "close":
                    c.close()
                    continue
                if ln.op == ">":
                    for writer in sorted(behind[node]):
                        sync(node, writer, ln)
                    behind[node].clear()
                    try:
                        req = msgpack.unpackb(ln.data, raw=False)
                        method = req[2] if isinstance(req, list) and \
                            len(req) == 4 and req[0] == 0 else None
                    except Exception:
                        method = None
                    if method in self.WRITES:
                        for other in nodes:
                            if other != node:
                                behind[other].add(node)
                    c.send(ln.data)
                    counts[">"] += 1
                    continue
                want = msgpack.unpackb(ln.data, raw=False,
                                       strict_map_key=False)
                try:
                    got = c.recv(WAIT)
                except (TimeoutError, EOFError, ValueError) as e:
                    self.fail("%s: nothing received (%r)"
                              % (self.where(ln), e))
                if not cl.spec_same_message(want, got, self.LOOSE):
                    self.fail("%s: the daemon's answer differs from the "
                              "spec\n  expected %r\n  received %r"
                              % (self.where(ln), want, got))
                counts["<"] += 1
        finally:
            for c in list(clients.values()) + list(ctl.values()):
                c.close()
            codes = {name: n.stop() for name, n in nodes.items()}
            # Their leases revoked: nothing of theirs changes etcd
            # later, under a prefix the next block's nodes do not watch.
            gone = eventually(lambda: not self.etcd.keys(prefix), WAIT)
        self.assertEqual(codes, {"n1": 0, "n2": 0}, "exit statuses on "
                         "SIGTERM")
        self.assertTrue(gone, "keys left under %s: %r"
                        % (prefix, sorted(self.etcd.keys(prefix))))


CLUSTER_SUB = 1 << 32      # cluster subscription ids are 2^32 + 1, ...


def events_of(client, sub, n, timeout=WAIT):
    """The next n events [sub, seq, kind, payload] of subscription sub on
    client (fewer if they do not come within timeout)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        got = client.wait_note(lambda m, p: m == "event" and p[0] == sub,
                               max(0.0, deadline - time.monotonic()))
        if got is None:
            break
        out.append(got[1])
    return out


def etcd_kind(ev):
    """A subscription's kind for an event of etcd's own watch."""
    if ev["type"] == "DELETE":
        return "unregistered"
    return "registered" if ev["version"] == 1 else "updated"


class Test13ClusterSubscribe(ClusterCase):
    """PROTOCOL.md §12 "Subscriptions across nodes" and §4.22: B's
    cluster subscriptions against what etcd's own watch reports of the
    same keys (seq = etcd revision, one event per change, in order)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.A, cls.B, cls.C = h.nodes_up(["nodeA", "nodeB", "nodeC"], ETCD,
                                         ttl=TTL)
        cls.prefix = h.nodes[0].argv[h.nodes[0].argv.index(
            "--cluster-prefix") + 1]

    def etcd_events(self, p, start, until):
        """etcd's history of names/p... from start: (kind, name, rev)."""
        keyp = self.prefix + "names/" + p
        return [(etcd_kind(ev), ev["key"][len(self.prefix) + 6:].decode(),
                 ev["mod_revision"])
                for ev in ETCD.history(keyp, start, until)]

    def test_13a_stream_resume_gap_unsubscribe(self):
        a, b, c = self.client(self.A), self.client(self.B), \
            self.client(self.C)
        p = self.name("")
        pre = reg_cluster(a, p + "pre", 0)
        self.seen(b, p + "pre", pre["gen"])
        r = b.call("subscribe", p, {"scope": "cluster"})
        sub = r.get("sub")
        with self.subTest("the response: an id above 2^32, the snapshot"):
            self.assertEqual(list(r), ["sub", "seq", "entries"])
            self.assertEqual(sub, CLUSTER_SUB + 1)
            self.assertGreaterEqual(r["seq"], pre["gen"])
            self.assertEqual(r["entries"], [pre])
        loc = b.call("subscribe", p)
        self.assertEqual(loc["sub"], 1, "a local subscription's id")
        e1 = reg_cluster(a, p + "a1", "x")
        e2 = reg_cluster(c, p + "c1", "c")
        u = a.call("update", p + "a1", "y")
        reg_cluster(c, "not-" + p + "elsewhere")     # not under p
        self.assertIs(c.call("unregister", p + "c1"), True)
        e3 = reg_cluster(a, p + "a2", [1, 2])
        self.assertIs(a.call("unregister", p + "a1"), True)
        evs = events_of(b, sub, 6)
        self.assertEqual(len(evs), 6, "B's events after 6 changes on A and "
                         "C: %r" % evs)
        got = [(ev[2], ev[3]["name"] if isinstance(ev[3], dict)
                else ev[3][0], ev[1]) for ev in evs]
        want = self.etcd_events(p, r["seq"] + 1, evs[-1][1])
        note("B's cluster events: %r", got)
        with self.subTest("the events are etcd's changes, seq = revision"):
            self.assertEqual(got, want)
        with self.subTest("payloads"):
            self.assertEqual([ev[3] for ev in evs], [
                e1, e2, u, [p + "c1", "unregistered"], e3,
                [p + "a1", "unregistered"]])
            self.assertEqual((evs[0][1], evs[1][1], evs[4][1]),
                             (e1["gen"], e2["gen"], e3["gen"]))
            self.assertEqual(u["gen"], e1["gen"])
        b.pump(0.05)
        self.assertEqual([x for x in b.notes if x[0] == "event"], [],
                         "more events than changes, or the local "
                         "subscription saw cluster names")

        since = evs[1][1]
        b2 = self.client(self.B)
        with self.subTest("resume with since: gap false, the rest "
                          "replayed in order"):
            r2 = b2.call("subscribe", p, {"scope": "cluster",
                                          "since": since})
            self.assertEqual(list(r2), ["sub", "seq", "gap"])
            self.assertEqual((r2["sub"], r2["gap"]), (CLUSTER_SUB + 1,
                                                      False))
            self.assertGreaterEqual(r2["seq"], evs[-1][1])
            again = events_of(b2, r2["sub"], 4)
            self.assertEqual([x[1:] for x in again],
                             [x[1:] for x in evs[2:]])
            b2.pump(0.05)
            self.assertEqual([x for x in b2.notes if x[0] == "event"], [],
                             "more than the events after since")
        with self.subTest("both streams go on live"):
            e4 = reg_cluster(c, p + "c2")
            for cli, s in ((b, sub), (b2, CLUSTER_SUB + 1)):
                live = events_of(cli, s, 1)
                self.assertEqual(live, [[s, e4["gen"], "registered", e4]])
        with self.subTest("since from before the node started: gap, "
                          "a fresh snapshot"):
            r3 = b2.call("subscribe", p, {"scope": "cluster", "since": 1})
            self.assertEqual(list(r3), ["sub", "seq", "gap", "entries"])
            self.assertEqual((r3["sub"], r3["gap"]), (CLUSTER_SUB + 2,
                                                      True))
            self.assertEqual(r3["entries"], b.call(
                "list", p, 100, None, {"scope": "cluster"}))
            self.assertEqual([x["name"] for x in r3["entries"]],
                             [p + "a2", p + "c2", p + "pre"])
            self.assertGreaterEqual(r3["seq"], e4["gen"])
        with self.subTest("since later than the current seq"):
            now = max(b2.call("stats")["cluster"]["revision"],
                      ETCD.revision())
            self.assertCode("bad_request", "subscribe", b2, p,
                            {"scope": "cluster", "since": now + 1000})
        with self.subTest("groups with scope cluster"):
            self.assertCode("bad_request", "subscribe", b2, p,
                            {"scope": "cluster", "groups": True})
        with self.subTest("unsubscribe by the 2^32+ id"):
            self.assertIs(b.call("unsubscribe", sub), True)
            self.assertIs(b.call("unsubscribe", sub), False)
            self.assertIs(b.call("unsubscribe", 1), True)   # the local one
            e5 = reg_cluster(a, p + "after")
            self.assertEqual(events_of(b2, CLUSTER_SUB + 2, 1),
                             [[CLUSTER_SUB + 2, e5["gen"], "registered",
                               e5]])
            self.seen(b, p + "after", e5["gen"])
            b.pump(0.05)
            self.assertEqual([x for x in b.notes if x[0] == "event"], [],
                             "events after unsubscribe")

    def test_13z_nodedown_one_seq(self):
        """Runs last: kills C."""
        a, b, c = self.client(self.A), self.client(self.B), \
            self.client(self.C)
        p = self.name("")
        names = [p + "d%d" % i for i in range(5)]
        for n in names:
            reg_cluster(c, n)
        keep = reg_cluster(a, p + "keep")
        self.seen(b, names[-1])
        self.seen(b, p + "keep", keep["gen"])
        r = b.call("subscribe", p, {"scope": "cluster"})
        self.assertEqual(len(r["entries"]), 6)
        t0 = time.monotonic()
        self.C.kill9()
        evs = events_of(b, r["sub"], 5, TTL + 5)
        took = time.monotonic() - t0
        note("B's events %.2fs after kill -9 of C (TTL %d): %r", took, TTL,
             [(x[1], x[2], x[3]) for x in evs])
        self.assertEqual(len(evs), 5, evs)
        self.assertEqual(sorted(x[3][0] for x in evs), names)
        self.assertEqual({x[2] for x in evs}, {"unregistered"})
        self.assertEqual({x[3][1] for x in evs}, {"nodedown"})
        seqs = {x[1] for x in evs}
        self.assertEqual(len(seqs), 1, "the lease's expiry is one revision")
        rev = seqs.pop()
        self.assertEqual(sorted(self.etcd_events(p, r["seq"] + 1, rev)),
                         sorted(("unregistered", n, rev) for n in names))
        gone = [ev for ev in ETCD.history(self.prefix + "nodes/",
                                          r["seq"] + 1, rev)
                if ev["type"] == "DELETE"]
        self.assertEqual([(ev["key"], ev["mod_revision"]) for ev in gone],
                         [((self.prefix + "nodes/nodeC").encode(), rev)])
        b.pump(0.2)
        self.assertEqual([x for x in b.notes if x[0] == "event"], [],
                         "an event for a name that lives on")


def entry_value(node=b"ghost", value=b"\xa3bad", version=1, conn=999999,
                pid=1, since=1795000000000, node_len=None):
    """A names/ value in §12's layout (node_len overrides the length byte
    that precedes the node name)."""
    le = int.to_bytes
    return (bytes([version, 0, len(node) if node_len is None else node_len,
                   0]) + le(1000, 4, "little") + le(1000, 4, "little") +
            le(conn, 8, "little") + le(pid, 8, "little") +
            le(since, 8, "little") + node + value)


def node_value(address=b"", version=1, since=1795000000000):
    """A nodes/ value in §12's layout."""
    return (bytes([version, len(address), 0, 0]) +
            int.to_bytes(since, 8, "little") + address)


class Test14ForeignKeys(ClusterCase):
    """Keys under the prefix that procreg did not write (PROTOCOL.md 12:
    "A node ignores keys under P it cannot parse"), put straight into
    etcd: no node crashes, none of them reaches an answer or an event,
    every answer is valid msgpack whose str are UTF-8 (the client's
    unpacker is raw=False: it raises otherwise), and valid names work
    alongside.  Both paths in: the watch (A and B, up before the keys
    came) and the first read (C, started after).

    Before 197516f a queued register's position counted
    the foreign keys under P queue/NAME NUL; a nodes/ key whose value did
    not parse made a live node in `nodes` and stats; a nodes/ address
    that was not UTF-8 went into `nodes`' "address" str as it was.
    Measured, not asserted: deleting a junk key whose name is valid
    gives an "unregistered" event of a name never shown (a delete
    carries no value); a well-formed foreign place at the head of a line
    holds the line (its waiters neither get the name nor hear lost)
    until it goes; a live name's key overwritten with junk stays in the
    caches while a consistent whereis answers nil."""

    # names/NAME -> value: none may appear
    BAD_NAMES = [
        (b"hostile/short", b"\x01"),
        (b"hostile/empty", b""),
        (b"hostile/header-cut", entry_value()[:35]),
        (b"hostile/version-0", entry_value(version=0)),
        (b"hostile/version-2", entry_value(version=2)),
        (b"hostile/node-past-end", entry_value(node_len=63)),
        (b"hostile/node-bad-chars", entry_value(node=b"bad node!")),
        (b"hostile/node-dot", entry_value(node=b".ghost")),
        (b"hostile/node-empty", entry_value(node=b"")),
        (b"hostile/node-not-ascii", entry_value(node="n\u00f6de".encode())),
        (b"hostile/node-not-utf8", entry_value(node=b"\xff\xfe")),
        (b"hostile/value-c1", entry_value(value=b"\xc1")),
        (b"hostile/value-two", entry_value(value=b"\x01\x02")),
        (b"hostile/value-array-cut", entry_value(value=b"\x92\x01")),
        (b"hostile/value-str-cut", entry_value(value=b"\xa5ab")),
        (b"hostile/value-too-deep", entry_value(value=b"\x91" * 40
                                                + b"\xc0")),
        (b"\xff\xfe", entry_value()),
        (b"a\x00b", entry_value()),
        (b"\xc0\xaf", entry_value()),                 # overlong '/'
        (b"\xed\xa0\x80", entry_value()),             # a surrogate
        (b"\xf4\x90\x80\x80", entry_value()),         # above U+10FFFF
        (b"", entry_value()),
        (b"h" * 256, entry_value()),
    ]
    # queue/... places in the line of ok/q: none may count
    BAD_PLACES = [
        b"ok/q", b"ok/q\0nodeB", b"ok/q\0nodeB/", b"ok/q\0nodeB/12x",
        b"ok/q\0nodeB/-1", b"ok/q\0nodeB/99999999999999999999999",
        b"ok/q\0bad node/3", b"ok/q\0.dot/3", b"ok/q\0-dash/3",
        b"ok/q\0" + b"n" * 64 + b"/3", b"ok/q\0/3", b"ok/q\0n\xc3\xb6de/3",
        b"ok/q\0n\xffde/3", b"\0nodeB/3", b"\xff\xfe\0nodeB/3",
    ]
    BAD_WHY = [(b"nodeA", b""), (b"nodeA", b"\x01"), (b"nodeA", b"\x01\xff"),
               (b"nodeA", b"\x02\x00"), (b"nodeA", b"\x01\x00\x00"),
               (b"\xff\xfe", b"\x01\x01"), (b"", b"\x01\x01")]
    # nodes/NODE -> value: junk a node cannot parse
    BAD_NODES = [(b"ghost1", b"junk"), (b"ghost2", node_value(version=2)),
                 (b"ghost3", b""), (b"ghost4", node_value()[:11]),
                 (b"bad node", node_value()), (b"\xff\xfe", node_value()),
                 (b".dot", node_value())]
    # a valid node name whose address is not UTF-8
    ODD_ADDRESS = (b"ghost5", node_value(b"\xff\xfe"))

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.A, cls.B = h.nodes_up(["nodeA", "nodeB"], ETCD, ttl=TTL)
        cls.prefix = h.nodes[0].argv[h.nodes[0].argv.index(
            "--cluster-prefix") + 1]

    def key(self, kind, rest):
        return self.prefix.encode() + kind + rest

    READS = (("list cluster", "list", "", 1000, None, {"scope": "cluster"}),
             ("list all", "list", "", 1000, None, {"scope": "all"}),
             ("queue", "queue", "ok/q"), ("nodes", "nodes"),
             ("stats", "stats"),
             ("subscribe", "subscribe", "", {"scope": "cluster"}))

    def answers_of(self, node):
        """Every read that could show a foreign key, each on a connection
        of its own: ({label: answer}, {label: decoding error}).  The
        client's unpacker is raw=False: a str that is not UTF-8 raises
        (and leaves that connection unusable)."""
        out, bad = {}, {}
        for label, method, *params in self.READS:
            with cl.Client(node.path) as c:
                try:
                    out[label] = c.request(method, params)
                except (UnicodeDecodeError, ValueError) as e:
                    bad[label] = repr(e)
        return out, bad

    def check_answers(self, node, label, names, line, live):
        got, bad = self.answers_of(node)
        with self.subTest("every answer decodes, str in UTF-8, on " + label):
            self.assertEqual(bad, {})
        with self.subTest("list, queue, stats, snapshot on " + label):
            self.assertEqual([x["name"] for x in got["list cluster"]],
                             names)
            self.assertEqual([x["name"] for x in got["list all"]], names)
            self.assertEqual(got["queue"], line)
            self.assertEqual([x["name"] for x in got["subscribe"]["entries"]],
                             names)
            self.assertEqual(got["stats"]["cluster"]["names"], len(names))
        with self.subTest("nodes on " + label):
            # Read raw (str as bytes), to see past a str not in UTF-8.
            rc = cl.RawClient(node.path, raw=True)
            try:
                rc.send(msgpack.packb([0, 1, "nodes", []]))
                ans = rc.recv()
            finally:
                rc.close()
            got["nodes raw"] = ans[3]
            listed = [x[b"name"] for x in ans[3]]
            note("%s: nodes %r", label, listed)
            for x in ans[3]:
                if x[b"name"] == self.ODD_ADDRESS[0]:
                    note("%s: a foreign node key whose address is not "
                         "UTF-8 shows as %r", label, x)
            self.assertTrue(set(live) <= set(listed), listed)
            for x in ans[3]:
                self.assertNotIn(x[b"name"], [n for n, _ in self.BAD_NODES],
                                 "a nodes/ key it cannot parse: %r" % x)
        with self.subTest("stats' count of live nodes on " + label):
            self.assertEqual(got["stats"]["cluster"]["nodes"],
                             len(live) + (self.ODD_ADDRESS[0] in listed))
        with self.subTest("whereis on " + label):
            cli = self.client(node)
            for name, _ in self.BAD_NAMES:
                try:
                    text = name.decode()
                except UnicodeDecodeError:
                    continue
                if not text or "\0" in text or len(name) > 255:
                    continue
                self.assertIsNone(whereis(cli, text), text)
                self.assertIsNone(whereis(cli, text, scope="cluster"), text)
                self.assertIsNone(whereis(cli, text, consistent=True), text)
        return got

    def test_14a_foreign_keys_reach_no_client(self):
        a, b = self.client(self.A), self.client(self.B)
        sub = b.call("subscribe", "", {"scope": "cluster"})["sub"]
        ok1 = reg_cluster(a, "ok/1", {"k": 1})
        q = reg_cluster(a, "ok/q", "held")
        t0 = time.monotonic()
        for name, value in self.BAD_NAMES:
            ETCD.put(self.key(b"names/", name), value)
        for place in self.BAD_PLACES:
            ETCD.put(self.key(b"queue/", place), b"\x01junk")
        for node, value in self.BAD_WHY:
            ETCD.put(self.key(b"why/", node), value)
        for node, value in self.BAD_NODES + [self.ODD_ADDRESS]:
            ETCD.put(self.key(b"nodes/", node), value)
        # Last, and well-formed: once it shows, every key before it has
        # been through the watch.
        ctrl = ETCD.put(self.key(b"names/", b"foreign/ok"),
                        entry_value(value=msgpack.packb("fine")))
        note("%d foreign keys put in %.2fs", len(self.BAD_NAMES) +
             len(self.BAD_PLACES) + len(self.BAD_WHY) + len(self.BAD_NODES)
             + 2, time.monotonic() - t0)
        for cli in (a, b):
            got = self.seen(cli, "foreign/ok", ctrl)
            self.assertEqual((got["node"], got["value"], got["conn"]),
                             ("ghost", "fine", 999999))
        waiter = self.client(self.B)
        with self.subTest("a waiter's position counts no foreign place"):
            self.assertEqual(waiter.call("register", "ok/q", "w", {
                "scope": "cluster", "queue": True}), {"queued": 1})
        line = [{"node": "nodeB", "conn": waiter.conn}]
        self.assertTrue(eventually(lambda: a.call("queue", "ok/q") == line,
                                   3), a.call("queue", "ok/q"))
        names = ["foreign/ok", "ok/1", "ok/q"]
        for node in (self.A, self.B):
            self.check_answers(node, node.name, names, line,
                               [b"nodeA", b"nodeB"])
        with self.subTest("B's events: the valid names only"):
            evs = events_of(b, sub, 3)
            self.assertEqual([(x[1], x[2], x[3]["name"]) for x in evs],
                             [(ok1["gen"], "registered", "ok/1"),
                              (q["gen"], "registered", "ok/q"),
                              (ctrl, "registered", "foreign/ok")])
            b.pump(0.05)
            self.assertEqual([x for x in b.notes if x[0] == "event"], [])

        with self.subTest("a node started now reads them all and shows "
                          "none"):
            C = self.harness.node("nodeC", ETCD, self.prefix, TTL)
            C.wait_up()
            self.check_answers(C, C.name, names, line,
                               [b"nodeA", b"nodeB", b"nodeC"])

        with self.subTest("valid names work alongside"):
            e = reg_cluster(b, "ok/2", 2)
            self.seen(a, "ok/2", e["gen"])
            self.assertIs(b.call("unregister", "ok/2"), True)
            self.vanishes(a, "ok/2")
            ref = b.call("monitor", "ok/q")
            self.assertIs(a.call("unregister", "ok/q"), True)
            acq = waiter.wait_note(lambda m, p: m == "acquired" and
                                   p[0] == "ok/q", 5)
            self.assertIsNotNone(acq, "the waiter behind %d foreign places "
                                 "never acquired" % len(self.BAD_PLACES))
            self.assertEqual((acq[1][1]["node"], acq[1][1]["conn"]),
                             ("nodeB", waiter.conn))
            self.assertEqual(b.wait_down(ref, 3), "unregistered")
            self.assertEqual(a.call("queue", "ok/q"), [])
        with self.subTest("a junk why key in the revision of a delete"):
            w = reg_cluster(a, "ok/w")
            self.seen(b, "ok/w", w["gen"])
            ref = b.call("monitor", "ok/w")
            rev = ETCD.txn(puts=[(self.key(b"why/", b"nodeA"),
                                  b"\x01\xff")],
                           deletes=[self.key(b"names/", b"ok/w")])
            self.assertEqual(b.wait_down(ref, 3), "unregistered")
            note("the owner of a name deleted behind its node's back, a "
                 "junk why key beside: lost %r", a.wait_lost("ok/w", 1))
        with self.subTest("junk over a live name's key"):
            over = reg_cluster(a, "ok/over", 1)
            self.seen(b, "ok/over", over["gen"])
            ETCD.put(self.key(b"names/", b"ok/over"), b"\x01")
            ctrl2 = ETCD.put(self.key(b"names/", b"foreign/ok2"),
                             entry_value(value=b"\xc0"))
            self.seen(b, "foreign/ok2", ctrl2)
            # A key no node would write is no entry (PROTOCOL.md 12):
            # its owner hears lost "evicted", every cache drops it.
            lost = a.wait_note(lambda m, p: m == "lost" and
                               p[0] == "ok/over", 3)
            self.assertEqual(lost, ("lost", ["ok/over", "evicted"]))
            self.vanishes(b, "ok/over")
            self.assertIsNone(whereis(a, "ok/over"))
            self.assertIsNone(whereis(b, "ok/over", consistent=True))
            # The junk stays in etcd until someone deletes it: the name
            # is taken meanwhile.
            self.assertCode("taken", "register", a, "ok/over", None,
                            {"scope": "cluster"})
            ETCD.delete(self.key(b"names/", b"ok/over"))
            ETCD.delete(self.key(b"names/", b"foreign/ok2"))
        with self.subTest("a well-formed foreign place at the head of a "
                          "line"):
            reg_cluster(a, "ok/h")
            stray = self.key(b"queue/", b"ok/h\0nodeB/777777")
            ETCD.put(stray, b"")
            w2 = self.client(self.B)
            pos = w2.call("register", "ok/h", "w2", {"scope": "cluster",
                                                     "queue": True})
            a.call("unregister", "ok/h")
            acq = w2.wait_note(lambda m, p: m == "acquired", 1.0)
            note("a waiter behind a place of its own node (B) that no "
                 "connection of B holds, put by a foreign writer: queued "
                 "%r; once the name is free: acquired %s, notes %r, "
                 "places left in etcd %r", pos, acq is not None,
                 list(w2.notes), sorted(
                     k[len(self.prefix):] for k in
                     ETCD.keys(self.prefix + "queue/ok/h\0")))
            # B holds no connection 777777: the place is not one of its
            # own, so B deletes it and its real waiter gets the name.
            self.assertIsNotNone(acq, "the waiter behind a stray place "
                                 "of its own node never got the name")
            self.assertEqual(ETCD.keys(self.prefix + "queue/ok/h\0"), {})
            ETCD.delete(stray)
        for node in (self.A, self.B, C):
            self.assertTrue(node.alive(), node.name)

        # The foreign keys go again.  Deleting a key whose name is valid
        # may give an "unregistered" event (a delete carries no value:
        # the node cannot tell it never showed the name); one whose name
        # is not a client's gives none.
        for name, _ in self.BAD_NAMES:
            ETCD.delete(self.key(b"names/", name))
        for place in self.BAD_PLACES:
            ETCD.delete(self.key(b"queue/", place))
        for node, _ in self.BAD_WHY + self.BAD_NODES + [self.ODD_ADDRESS]:
            ETCD.delete(self.key(b"nodes/", node))
            ETCD.delete(self.key(b"why/", node))
        end = ETCD.delete(self.key(b"names/", b"foreign/ok"))
        self.vanishes(b, "foreign/ok")
        evs = []
        while True:
            got = events_of(b, sub, 1, 3)
            if not got:
                break
            evs += got
            if got[0][1] == end:
                break
        with self.subTest("the deletes' events"):
            self.assertEqual(evs[-1], [sub, end, "unregistered",
                                       ["foreign/ok", "unregistered"]])
            junk = [x for x in evs if x[2] == "unregistered" and
                    x[3][0].startswith("hostile/")]
            note("events after the foreign keys' deletes: %d "
                 "(%d unregistered of names never shown)", len(evs),
                 len(junk))
            valid = {"ok/2", "ok/q", "ok/w", "ok/over", "ok/h", "foreign/ok",
                     "foreign/ok2"} | {
                n.decode() for n, _ in self.BAD_NAMES
                if n.startswith(b"hostile/")}
            for x in evs:
                if x[2] == "unregistered":
                    self.assertIn(x[3][0], valid)
                    self.assertIn(x[3][1], ("unregistered", "nodedown",
                                            "evicted"))
                else:
                    self.assertIn(x[3]["name"], valid)
        # The line of ok/h goes on once the stray place is gone.
        listed = eventually(lambda: [x["name"] for x in b.call(
            "list", "", 1000, None, {"scope": "cluster"})] ==
            ["ok/1", "ok/h", "ok/q"], 3)
        self.assertTrue(listed, b.call("list", "", 1000, None,
                                       {"scope": "cluster"}))


class Test15AcquireAtLeaseLoss(ClusterCase):
    """A hand-over in flight when its node loses the lease: the waiter is
    told lost [name, "nodedown"] (PROTOCOL.md 12) and nothing else; the
    hand-over is the node's own write, no request of the waiter's, so no
    response may reach the connection.  Node A is behind a FakeEtcd that,
    once armed, leaves transactions and keepalives unanswered (its etcd
    timeout is longer than the TTL): the hand-over's transaction is still
    waiting when A's clock says the lease is gone.

    Before 5bb7e87, cl_lose answered the hand-over (an
    OP_ACQUIRE, msgid 0) "unavailable": the waiter got [1, 0, [...],
    nil]; test_07_sigstop_longer_than_ttl hit it now and then, with a
    premature hand-over (its node had not yet seen the holder's key)
    in flight when A was stopped."""
    TIMEOUT_MS = (TTL + 3) * 1000

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        h = cls.make_harness()
        cls.fake = cl.FakeEtcd("slowloris", ETCD.members[0],
                               ["/v3/kv/txn", "/v3/lease/keepalive"],
                               armed=False)
        cls.addClassCleanup(cls.fake.stop)
        prefix = h.new_prefix()
        cls.A = h.node("nodeA", cls.fake.url, prefix, TTL,
                       etcd_timeout=cls.TIMEOUT_MS)
        cls.B = h.node("nodeB", ETCD, prefix, TTL)
        cls.A.wait_up()
        cls.B.wait_up()

    def test_15_handover_in_flight_at_lease_loss(self):
        b, w = self.client(self.B), self.client(self.A)
        n = self.name("lock")
        e = reg_cluster(b, n)
        self.seen(w, n, e["gen"])
        self.assertEqual(w.call("register", n, "w", {
            "scope": "cluster", "queue": True}), {"queued": 1})
        self.fake.arm()
        t0 = time.monotonic()
        try:
            self.assertIs(b.call("unregister", n), True)
            got = []
            deadline = time.monotonic() + TTL + 4
            while time.monotonic() < deadline:
                try:
                    msg = w._read(deadline)
                except TimeoutError:
                    break
                got.append(msg)
                if msg[0] == 2 and msg[1] == "lost":
                    w.pump(0.2)
                    got += [[2] + list(x) for x in w.notes]
                    break
        finally:
            self.fake.disarm()
            self.fake.drop()
        note("the waiter, its hand-over in flight when its node lost the "
             "lease: %r within %.2fs", got, time.monotonic() - t0)
        self.assertEqual([m for m in got if m[0] != 2], [],
                         "responses to no request of the waiter's")
        self.assertIn([2, "lost", [n, "nodedown"]], got)
        self.assertEqual(self.A.wait_state(lambda s: s == "up", 15), "up")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))   # runs atexit
    unittest.main(verbosity=2)
