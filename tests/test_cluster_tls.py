#!/usr/bin/python3
"""TLS to etcd with client certificates, and several endpoints with
fail-over (issue 14): procregd's etcd client (src/cluster/etcd.c) against
a real etcd that serves https only and demands a client certificate.

A throwaway PKI is made with the openssl command in a temporary
directory: a CA, a server certificate for 127.0.0.1 (subjectAltName
IP:127.0.0.1 and DNS:localhost), a client certificate of that CA, and an
unrelated second CA with a client certificate of its own.  One etcd
member serves https client URLs on free loopback ports (--cert-file,
--key-file, --client-cert-auth, --trusted-ca-file; the peer URL stays
http on loopback), and, where 127.0.0.2 can be bound, a second client
URL on 127.0.0.2, which the server certificate does not name.

Every node is started at once in setUpClass; the nodes that must never
join are watched together for WINDOW seconds, so the whole file runs in
a few seconds more than etcd's start.  Every wait polls with a deadline
and fails with the daemon's log tail; no timing is asserted beyond
generous bounds.  Everything started here is stopped and removed at
class cleanup, and by clusterlib's atexit hook whatever happens.

Two tests are marked expected failures, for what the daemon does not do
yet: its log gives no TLS reason for a failing connection to etcd (see
the comment above test_c_log_says_why_etcd_is_not_trusted); and under
valgrind one more, for a leak on the path of a start that fails (see
UNDER_VALGRIND_FAILS).

Environment: PROCREGD (default ../procregd), ETCD (default etcd on PATH),
OPENSSL (default openssl on PATH), CLUSTER_LOG_LEVEL (default debug)."""
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import clusterlib as cl  # noqa: E402
from clusterlib import RPCError, eventually, reg_cluster, whereis  # noqa

OPENSSL = os.environ.get("OPENSSL") or shutil.which("openssl") or \
    "/usr/bin/openssl"
WAIT = cl.WAIT       # bound of every wait for something that must happen
WINDOW = 3.0         # how long a misconfigured node is watched not joining


# ------------------------------------------------------------------- PKI

def openssl(*args, cwd):
    """Runs the openssl command; AssertionError with its output if it
    fails."""
    try:
        p = subprocess.run([OPENSSL] + list(args), cwd=cwd,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("openssl %s: no exit in 30 s" % " ".join(args))
    if p.returncode != 0:
        raise AssertionError("openssl %s: exit %d\n%s%s" % (
            " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p.stdout


class PKI:
    """The certificates, as paths in dir: ca, server, client (of ca);
    otherca, otherclient (of otherca); each X.crt with X.key (P-256)."""

    LEAF = ("basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n")
    # The server certificate is a client certificate too: etcd 3.4's JSON
    # gateway reaches etcd's own gRPC server over TLS with --cert-file,
    # and --client-cert-auth checks that one as well.
    SERVER = LEAF + ("extendedKeyUsage=serverAuth,clientAuth\n"
                     "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    CLIENT = LEAF + "extendedKeyUsage=clientAuth\n"

    def __init__(self, dir):
        self.dir = dir
        self._ca("ca")
        self._ca("otherca")
        self._leaf("server", "ca", self.SERVER)
        self._leaf("client", "ca", self.CLIENT)
        self._leaf("otherclient", "otherca", self.CLIENT)
        for f in os.listdir(dir):
            if f.endswith(".csr") or f.endswith(".ext"):
                os.unlink(os.path.join(dir, f))

    def crt(self, name):
        return os.path.join(self.dir, name + ".crt")

    def key(self, name):
        return os.path.join(self.dir, name + ".key")

    def _key(self, name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-out", name + ".key",
                cwd=self.dir)

    def _ca(self, name):
        self._key(name)
        openssl("req", "-x509", "-new", "-key", name + ".key", "-out",
                name + ".crt", "-days", "2",
                "-subj", "/CN=procreg test %s %s" % (name,
                                                      uuid.uuid4().hex[:8]),
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                cwd=self.dir)

    def _leaf(self, name, ca, ext):
        self._key(name)
        with open(os.path.join(self.dir, name + ".ext"), "w") as f:
            f.write(ext)
        openssl("req", "-new", "-key", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=procreg test %s" % name, cwd=self.dir)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt",
                "-CAkey", ca + ".key", "-set_serial",
                "0x" + uuid.uuid4().hex[:16], "-days", "2",
                "-extfile", name + ".ext", "-out", name + ".crt",
                cwd=self.dir)


# ------------------------------------------------------------------ etcd

def free_port_on(addr):
    """A TCP port free on addr right now; None if addr cannot be bound."""
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


class TLSEtcd:
    """One etcd member whose client URLs are https with client
    certificates required: .url (127.0.0.1, named by the server
    certificate) and .alt_url (127.0.0.2, not named by it; None when
    127.0.0.2 cannot be bound)."""

    def __init__(self, pki):
        self.pki = pki
        self.base = None
        self.proc = None
        self.log = None

    def start(self, timeout=30.0, attempts=3):
        last = ""
        for _ in range(attempts):
            # fsync on tmpfs costs nothing, as in clusterlib.
            shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
            self.base = tempfile.mkdtemp(prefix="procreg-etcd-tls.", dir=shm)
            cl._dirs.append(self.base)      # removed at exit in any case
            self.log = os.path.join(self.base, "etcd.log")
            self.port = cl.free_port()
            self.alt_port = free_port_on("127.0.0.2")
            peer = "http://127.0.0.1:%d" % cl.free_port()
            self.url = "https://127.0.0.1:%d" % self.port
            self.alt_url = (None if self.alt_port is None else
                            "https://127.0.0.2:%d" % self.alt_port)
            listen = self.url + ("," + self.alt_url if self.alt_url else "")
            argv = [cl.ETCD, "--name", "e1",
                    "--data-dir", os.path.join(self.base, "data"),
                    "--listen-client-urls", listen,
                    "--advertise-client-urls", self.url,
                    "--listen-peer-urls", peer,
                    "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", "e1=" + peer,
                    "--initial-cluster-token",
                    "procreg-tls-" + uuid.uuid4().hex[:8],
                    "--initial-cluster-state", "new",
                    "--cert-file", self.pki.crt("server"),
                    "--key-file", self.pki.key("server"),
                    "--client-cert-auth",
                    "--trusted-ca-file", self.pki.crt("ca")]
            with open(self.log, "ab") as f:
                f.write(b"=== start %s\n" % " ".join(argv).encode())
            self.proc = cl.spawn(argv, self.log)
            ok = eventually(lambda: self.answers() or not self.alive(),
                            timeout, 0.1)
            if ok and self.alive():
                return self
            last = self.log_tail()
            self.stop()
        raise AssertionError("etcd with TLS did not start:\n%s" % last)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def context(self):
        ctx = ssl.create_default_context(cafile=self.pki.crt("ca"))
        ctx.load_cert_chain(self.pki.crt("client"), self.pki.key("client"))
        return ctx

    def api(self, path, body, timeout=2.0):
        """POST /v3/... over https with the good client certificate."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           timeout=timeout,
                                           context=self.context())
        try:
            conn.request("POST", path, json.dumps(body),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise ValueError("%s: HTTP %d %r" % (path, resp.status,
                                                     data[:200]))
            return json.loads(data)
        finally:
            conn.close()

    def answers(self):
        try:
            self.api("/v3/kv/range", {"key": cl.b64("procreg-tls-probe")})
            return True
        except (OSError, ValueError, http.client.HTTPException):
            return False

    def keys(self, prefix):
        ans = self.api("/v3/kv/range", {
            "key": cl.b64(prefix), "range_end": cl.b64(cl.prefix_end(prefix)),
            "keys_only": True})
        return sorted(cl.unb64(kv["key"]).decode("utf-8", "replace")
                      for kv in ans.get("kvs", []))

    def stop(self):
        if self.proc is not None:
            cl.stop_proc(self.proc)
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines=15):
        return cl.tail(self.log, lines) if self.log else "(no log)"



def note(fmt, *args):
    """A measurement, printed as the test runs."""
    sys.stderr.write("    [measured] " + (fmt % args) + "\n")

# ----------------------------------------------------------------- tests

# Under valgrind (make test-valgrind: PROCREGD is tests/valgrind-procregd.sh)
# a daemon that cannot load its TLS files exits 99, not 1: the start's
# failure path leaks the cluster subscriptions' tables (server.c:
# server_cluster_start's subs_init(&s->csubs) is not undone when
# cluster_new fails, and server_deinit frees csubs only with a cluster).
# Remove this once that is fixed.
UNDER_VALGRIND_FAILS = (lambda f: f)   # fixed: server.c undoes it


def tls_args(pki, ca="ca", client="client"):
    return ["--etcd-ca", pki.crt(ca), "--etcd-cert", pki.crt(client),
            "--etcd-key", pki.key(client)]


def run_daemon(argv, timeout=10, **kw):
    """procregd with argv to its exit: (status, stdout + stderr)."""
    try:
        p = subprocess.run([cl.DAEMON] + argv, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("procregd %s: no exit within %d s; output:\n%s"
                             % (" ".join(argv), timeout,
                                (e.stdout or b"").decode(errors="replace")))
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


class TestClusterTLS(unittest.TestCase):
    """One TLS etcd, and every node of the file started at once:

      A, B      the right CA and client certificate
      BADCERT   the other CA's client certificate (etcd refuses it)
      BADCA     --etcd-ca the other CA (the node refuses etcd)
      BADSAN    the right files, but etcd reached as 127.0.0.2, an address
                its certificate does not name (only with 127.0.0.2)
      FAILOVER  a dead port first, then the real etcd
      FAILTLS   the 127.0.0.2 endpoint first (TLS fails), then the real
                one (only with 127.0.0.2)"""

    @classmethod
    def setUpClass(cls):
        for prog in (cl.DAEMON, cl.ETCD, OPENSSL):
            if not os.path.exists(prog):
                raise AssertionError("%s not found (make builds procregd; "
                                     "make deps installs etcd-server and "
                                     "openssl)" % prog)
        cls.etcd = None
        cls.h = cl.Harness("tls")
        cls.addClassCleanup(cls._cleanup)
        t0 = time.monotonic()
        pkidir = os.path.join(cls.h.tmp, "pki")
        os.makedirs(pkidir)
        cls.pki = PKI(pkidir)
        cls.t_pki = time.monotonic() - t0
        cls.etcd = TLSEtcd(cls.pki).start()
        cls.t_etcd = time.monotonic() - t0 - cls.t_pki
        cls.prefix = cl.Harness.new_prefix()
        cls.dead = cl.free_port()     # nothing listens there
        e, pki = cls.etcd, cls.pki

        def node(name, url, ca="ca", client="client"):
            return cls.h.node(name, url, cls.prefix,
                              extra=tls_args(pki, ca, client))
        cls.a = node("A", e.url)
        cls.b = node("B", e.url)
        cls.failover = node("FAILOVER", "https://127.0.0.1:%d,%s"
                            % (cls.dead, e.url))
        cls.bad = {"BADCERT": node("BADCERT", e.url, client="otherclient"),
                   "BADCA": node("BADCA", e.url, ca="otherca")}
        cls.failtls = None
        if e.alt_url is not None:
            cls.bad["BADSAN"] = node("BADSAN", e.alt_url)
            cls.failtls = node("FAILTLS", "%s,%s" % (e.alt_url, e.url))
        # The nodes that must never join, watched together for WINDOW s
        # once they all serve (valgrind may start them slowly): every
        # state each one answered stats with.
        cls.seen = {name: [] for name in cls.bad}
        for n in cls.bad.values():
            n.wait_accepting()
        started = time.monotonic()
        while True:
            for name, n in cls.bad.items():
                st = n.safe_state()
                if not cls.seen[name] or cls.seen[name][-1] != st:
                    cls.seen[name].append(st)
            if time.monotonic() - started >= WINDOW:
                break
            time.sleep(0.1)
        for n in cls.bad.values():
            n.close_poller()
        cls.t_setup = time.monotonic() - t0

    @classmethod
    def _cleanup(cls):
        diag = cls.diag()
        codes = cls.h.cleanup()
        if cls.etcd is not None:
            cls.etcd.stop()
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            raise AssertionError("nodes did not exit 0 on SIGTERM: %r\n%s"
                                 % (bad, diag))

    @classmethod
    def diag(cls):
        out = []
        for n in cls.h.nodes:
            out.append("--- node %s (%s, %s):\n%s" % (
                n.name, "running" if n.alive() else "exited %r" % (
                    n.proc.returncode if n.proc else None),
                n.log, n.log_tail(20)))
        if cls.etcd is not None:
            out.append("--- etcd (%s):\n%s" % (cls.etcd.log,
                                               cls.etcd.log_tail(20)))
        return "\n".join(out)

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result else 0
        out = super().run(result)
        if result is not None and before != (len(result.failures),
                                             len(result.errors)):
            sys.stderr.write("\n===== %s failed; logs:\n%s\n=====\n"
                             % (self.id(), self.diag()))
        return out

    # helpers
    def client(self, node):
        c = node.client(WAIT)
        self.addCleanup(c.close)
        return c

    def up(self, node):
        node.wait_up(WAIT)
        return node

    def seen_on(self, client, node, name, owner, gen):
        last = ["nothing"]

        def f():
            last[0] = whereis(client, name)
            e = last[0]
            return e if e and e.get("node") == owner and \
                e.get("gen") == gen else None
        e = eventually(f, WAIT)
        self.assertIsNotNone(e, "%s: whereis %r never showed %s's entry "
                             "(gen %r) in %gs; last answer %r\n%s"
                             % (node.name, name, owner, gen, WAIT, last[0],
                                node.log_tail()))
        return e

    def stats_etcd(self, node):
        with node.client(WAIT) as c:
            return c.request("stats")["cluster"]["etcd"]

    def assertNeverUp(self, name):
        n = self.bad[name]
        seen = self.seen[name]
        self.assertTrue(n.alive(), "%s exited (%r):\n%s"
                        % (name, n.proc.returncode, n.log_tail()))
        # A poll may go unanswered in its 3 s on a loaded machine (the
        # daemon under valgrind): that is no state, but no other is.
        self.assertNotIn("up", seen, "%s came up; states seen: %r\n%s"
                         % (name, seen, n.log_tail()))
        odd = [st for st in seen if st != "joining" and
               not st.startswith("(no answer to stats")]
        self.assertFalse(odd, "%s: states seen in %g s: %r\n%s"
                         % (name, WINDOW, seen, n.log_tail()))
        # Still joining now, and etcd holds nothing of it.
        with n.client(WAIT) as c:
            st = c.request("stats")["cluster"]
        self.assertEqual(st["state"], "joining", "%r\n%s"
                         % (st, n.log_tail()))
        keys = self.etcd.keys(self.prefix)
        self.assertFalse([k for k in keys if k.endswith("/" + name)],
                         "%s left keys in etcd: %r" % (name, keys))
        log = cl.tail(n.log, 200)
        self.assertIn("cluster: lease grant failed", log,
                      "%s's log says nothing of its failing join:\n%s"
                      % (name, n.log_tail()))
        self.assertNotIn("joined as node", log, log)

    def assertLocalNamesWork(self, node):
        c = self.client(node)
        e = c.call("register", "tls-local/" + node.name, {"v": 1})
        self.assertEqual(e["name"], "tls-local/" + node.name)
        self.assertNotIn("scope", e, e)
        got = whereis(c, "tls-local/" + node.name)
        self.assertEqual(got["gen"], e["gen"], got)
        self.assertEqual(got["value"], {"v": 1}, got)
        self.assertTrue(c.call("unregister", "tls-local/" + node.name))
        # A cluster write cannot succeed on a node that never joined.
        t0 = time.monotonic()
        with self.assertRaises(RPCError, msg="a cluster register on %s "
                               "succeeded" % node.name) as cm:
            reg_cluster(c, "tls-cluster/" + node.name, timeout=WAIT)
        self.assertEqual(cm.exception.code, "unavailable", cm.exception)
        self.assertLess(time.monotonic() - t0, WAIT)

    # (a) the right CA and client certificate
    def test_a_two_nodes_over_tls(self):
        self.up(self.a)
        self.up(self.b)
        ca, cb = self.client(self.a), self.client(self.b)
        e = reg_cluster(ca, "tls/lock", {"k": "v"})
        self.assertEqual((e["scope"], e["node"]), ("cluster", "A"), e)
        got = self.seen_on(cb, self.b, "tls/lock", "A", e["gen"])
        self.assertEqual(got["value"], {"k": "v"}, got)
        self.assertNotIn("stale", got, got)
        # A read of etcd itself through B's TLS connection.
        got = whereis(cb, "tls/lock", consistent=True)
        self.assertEqual((got["node"], got["gen"]), ("A", e["gen"]), got)
        self.assertEqual(cb.error_of("register", "tls/lock", None,
                                     {"scope": "cluster"}), "taken")
        self.assertIn(self.prefix + "names/tls/lock",
                      self.etcd.keys(self.prefix))
        self.assertTrue(ca.call("unregister", "tls/lock"))
        ok = eventually(lambda: whereis(cb, "tls/lock") is None, WAIT)
        self.assertTrue(ok, "B still sees tls/lock:\n" + self.b.log_tail())
        st = self.stats_etcd(self.a)
        self.assertIn("endpoint=%s state=up" % self.etcd.url, st)

    # (b) a client certificate of another CA
    def test_b_foreign_client_certificate(self):
        self.assertNeverUp("BADCERT")
        self.assertLocalNamesWork(self.bad["BADCERT"])
        # etcd says why it refused (its log is the one that does).
        log = cl.tail(self.etcd.log, 400)
        self.assertRegex(log, r"rejected connection .*(certificate|"
                         r"unknown authority)", "etcd's log:\n" + log[-3000:])

    # (c) the node does not trust the server's certificate
    def test_c_untrusted_server(self):
        self.assertNeverUp("BADCA")
        self.assertLocalNamesWork(self.bad["BADCA"])

    def test_c_server_certificate_not_for_this_address(self):
        if "BADSAN" not in self.bad:
            self.skipTest("127.0.0.2 cannot be bound here")
        self.assertNeverUp("BADSAN")

    # Why the daemons above fail, in their logs.
    def assertLogSaysWhy(self, name):
        n = self.bad[name]
        # The daemon's own lines about etcd (not the command line, whose
        # paths name the files).
        lines = [ln for ln in cl.tail(n.log, 200).splitlines()
                 if ln.startswith("procregd:") and
                 re.search(r"(?i)fail|error|unavailable", ln)]
        self.assertTrue(lines, "%s logs no failure:\n%s"
                        % (name, n.log_tail(8)))
        self.assertRegex("\n".join(lines),
                         r"(?i)certificate|verif|\btls\b|ssl|alert",
                         "%s's log does not say why:\n%s"
                         % (name, n.log_tail(8)))

    # The log names the cause of a TLS failure (etcd.c's etcd_tls_why).
    def test_c_log_says_why_etcd_is_not_trusted(self):
        """The node's own refusal (BADCA, BADSAN): the verify result is
        on the SSL object (X509_verify_cert_error_string)."""
        for name in ("BADCA", "BADSAN"):
            if name in self.bad:
                self.assertLogSaysWhy(name)

    def test_b_log_reports_etcd_refusing_us(self):
        """etcd's refusal of the client certificate (BADCERT) reaches the
        node as a TLS alert after its side of the handshake, which is
        often lost (etcd closes, the node's write is reset).  etcd.c then
        says what the likely cause is once the handshake had begun; when
        the connection went before libevent saw the handshake begin, the
        node can only say it could not connect.  So: the failure is
        always logged (asserted), its cause when the node can know it
        (measured: how often, in the note)."""
        n = self.bad["BADCERT"]
        lines = [ln for ln in cl.tail(n.log, 200).splitlines()
                 if ln.startswith("procregd:") and
                 re.search(r"(?i)fail|error|unavailable", ln)]
        self.assertTrue(lines, "BADCERT logs no failure:\n%s"
                        % n.log_tail(8))
        why = [ln for ln in lines if re.search(
            r"(?i)certificate|verif|\btls\b|ssl|alert", ln)]
        note("BADCERT: %d of %d failure lines say why (%s)", len(why),
             len(lines), (why or lines)[0].split(": ", 3)[-1])

    # (d) fail-over from a dead endpoint
    def test_d_failover_from_dead_endpoint(self):
        n = self.up(self.failover)
        c = self.client(n)
        e = reg_cluster(c, "tls/failover", 7)
        self.assertEqual(e["node"], "FAILOVER", e)
        self.seen_on(self.client(self.up(self.a)), self.a, "tls/failover",
                     "FAILOVER", e["gen"])
        st = self.stats_etcd(n)
        self.assertIn("endpoint=%s state=up endpoints=2" % self.etcd.url, st)
        self.assertTrue(c.call("unregister", "tls/failover"))

    def test_d_failover_from_tls_failure(self):
        if self.failtls is None:
            self.skipTest("127.0.0.2 cannot be bound here")
        n = self.up(self.failtls)
        c = self.client(n)
        e = reg_cluster(c, "tls/failtls")
        self.seen_on(self.client(self.up(self.b)), self.b, "tls/failtls",
                     "FAILTLS", e["gen"])
        self.assertTrue(c.call("unregister", "tls/failtls"))

    # (e) the configuration check
    def cfg_args(self, key=None, cert=None):
        conf = os.path.join(self.h.tmp, "empty.conf")
        open(conf, "w").close()
        os.chmod(conf, 0o644)
        args = ["-c", conf, "--check-config", "--etcd", self.etcd.url,
                "--node", "chk", "-s", os.path.join(self.h.tmp, "chk.sock"),
                "--etcd-ca", self.pki.crt("ca")]
        if cert is not False:
            args += ["--etcd-cert", cert or self.pki.crt("client")]
        if key is not False:
            args += ["--etcd-key", key or self.pki.key("client")]
        return args

    def test_e_check_config(self):
        code, out = run_daemon(self.cfg_args())
        self.assertEqual(code, 0, out)
        self.assertIn(": ok", out)
        # A key that does not exist.
        missing = os.path.join(self.pki.dir, "missing.key")
        code, out = run_daemon(self.cfg_args(key=missing))
        self.assertEqual(code, 2, out)
        self.assertRegex(out, "etcd[-_]key")
        self.assertIn(missing, out)
        self.assertIn("No such file", out)
        # A certificate without its key.
        code, out = run_daemon(self.cfg_args(key=False))
        self.assertEqual(code, 2, out)
        self.assertRegex(out, "etcd[-_]cert")

    def test_e_check_config_unreadable_key(self):
        """A key file the daemon's user cannot read: mode 0 as a user;
        as root (whom modes do not stop) the check runs as nobody over
        files nobody may read but that key."""
        key = os.path.join(self.pki.dir, "unreadable.key")
        shutil.copy(self.pki.key("client"), key)
        os.chmod(key, 0)
        kw = {}
        if os.geteuid() == 0:
            os.chmod(self.h.tmp, 0o755)
            os.chmod(self.pki.dir, 0o755)
            for f in ("ca", "client"):
                os.chmod(self.pki.crt(f), 0o644)
            os.chmod(self.pki.key("client"), 0o644)

            def drop():
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            kw["preexec_fn"] = drop
            code, out = run_daemon(self.cfg_args(), **kw)
            if code != 0:
                self.skipTest("procregd does not run as nobody here (the "
                              "good configuration gives %d: %s)"
                              % (code, out.strip()))
        code, out = run_daemon(self.cfg_args(key=key), **kw)
        self.assertEqual(code, 2, out)
        self.assertRegex(out, "etcd[-_]key")
        self.assertIn("Permission denied", out)
        self.assertNotRegex(out, "etcd[-_]ca")
        self.assertNotRegex(out, "etcd[-_]cert")

    @UNDER_VALGRIND_FAILS
    def test_e_mismatched_key_stops_the_start(self):
        """--check-config only checks that the files are readable; a key
        that is not the certificate's stops the daemon at start (exit 1)
        with the reason in its log."""
        n = self.h.node("BADKEY", self.etcd.url, self.prefix, extra=[
            "--etcd-ca", self.pki.crt("ca"),
            "--etcd-cert", self.pki.crt("client"),
            "--etcd-key", self.pki.key("otherclient")])
        try:
            code = n.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.fail("BADKEY still runs after %g s:\n%s" % (WAIT,
                                                             n.log_tail()))
        self.assertEqual(code, 1, n.log_tail())
        self.assertRegex(cl.tail(n.log, 20),
                         r"etcd client certificate .* cannot load")

    @classmethod
    def tearDownClass(cls):
        sys.stderr.write("    [measured] PKI %.1f s, etcd start %.1f s, "
                         "setup %.1f s\n" % (cls.t_pki, cls.t_etcd,
                                             cls.t_setup))


if __name__ == "__main__":
    unittest.main(verbosity=2)
