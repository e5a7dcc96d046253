#!/usr/bin/python3
"""procregd as a service, without a running systemd: the configuration
file and --check-config, SIGHUP reload (a valid file applies, an invalid
one is refused and the old configuration kept), socket activation through
systemd-socket-activate (the daemon uses the socket it is handed and
leaves it in place), sd_notify READY/STATUS/WATCHDOG/RELOADING/STOPPING
on a NOTIFY_SOCKET of our own, and the socket file's mode.  Every wait is
bounded; nothing is timed."""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMON = os.environ.get("PROCREGD", os.path.join(ROOT, "procregd"))
results = {"passed": 0, "failed": 0, "skipped": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what)
    return cond


def eventually(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def accepts(path):
    """Does a daemon accept connections on path?  The file appears at
    bind(), a moment before listen(): its existence is not enough."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0

    def rest(self):
        """Every object until the daemon closes the connection."""
        got = []
        while True:
            data = self.sock.recv(65536)
            if not data:
                return got
            self.unpacker.feed(data)
            got.extend(self.unpacker)

    def call(self, method, *params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)]))
        while True:
            for obj in self.unpacker:
                if obj[0] == 1 and obj[1] == self.msgid:
                    return obj[2], obj[3]
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.unpacker.feed(data)


def start(args, env=None, **kw):
    return subprocess.Popen([DAEMON] + args, env=env,
                            stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -1


def test_check_config(tmp):
    good = os.path.join(tmp, "good.conf")
    bad = os.path.join(tmp, "bad.conf")
    with open(good, "w") as f:
        f.write("# a comment\n[daemon]\nlog_level = debug\n"
                "[limits]\nmax_names = 2\n")
    with open(bad, "w") as f:
        f.write("[daemon]\nlog_level = loud\nbogus = 1\n[limits]\n"
                "max_names = -3\nnot a key value line\nmax_conns = 5\n"
                "max_conns = 6\n")
    r = subprocess.run([DAEMON, "--check-config", "-c", good],
                       capture_output=True, text=True, timeout=10)
    check("--check-config accepts a valid file",
          r.returncode == 0 and "ok" in r.stdout)
    r = subprocess.run([DAEMON, "--check-config", "-c", bad],
                       capture_output=True, text=True, timeout=10)
    lines = r.stderr.strip().splitlines()
    check("--check-config rejects an invalid file", r.returncode == 2)
    check("one FILE:LINE: message per error (5)",
          [l.split(":")[1] for l in lines] == ["2", "3", "5", "6", "8"]
          and all(l.startswith(bad + ":") for l in lines))
    check("a key set twice is an error naming the first line",
          "already set on line 7" in lines[-1])
    check("a number out of range is worded as on the command line",
          any(l.endswith("max_names: expected a number from 1 to 4294967295")
              for l in lines))
    r = subprocess.run([DAEMON, "--max-names", "-3"], capture_output=True,
                       text=True, timeout=10)
    check("... which says the same (exit 2)", r.returncode == 2 and
          r.stderr.strip().endswith(
              "--max-names: expected a number from 1 to 4294967295"))
    r = subprocess.run([DAEMON, "--help"], capture_output=True, text=True,
                       timeout=10)
    check("procregd --help fits in 80 columns", r.returncode == 0 and
          max(len(l) for l in r.stdout.splitlines()) <= 80)
    check("unknown keys are errors", any("bogus" in l for l in lines))
    shipped = os.path.join(ROOT, "conf", "procreg.conf")
    if os.path.exists(shipped):
        r = subprocess.run([DAEMON, "--check-config", "-c", shipped],
                           capture_output=True, text=True, timeout=10)
        check("the shipped conf/procreg.conf is valid", r.returncode == 0)
    r = subprocess.run([DAEMON, "-c", bad, "-s", os.path.join(tmp, "x")],
                       capture_output=True, text=True, timeout=10)
    check("the daemon refuses to start on an invalid file (exit 2)",
          r.returncode == 2)


class Notify:
    """A NOTIFY_SOCKET of our own: the daemon's sd_notify messages, in
    order, so that a test waits for the daemon to say it did something
    rather than sleeping and hoping it has."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(10)

    def wait(self, word):
        """True once a message holding word arrives (bounded), skipping
        those before it."""
        while True:
            try:
                if word in self.sock.recv(4096).decode():
                    return True
            except socket.timeout:
                return False

    def reloaded(self):
        """The daemon took a SIGHUP and is serving again: RELOADING=1,
        then READY=1, which it sends whether it applied the file or
        refused it."""
        return self.wait("RELOADING=1") and self.wait("READY=1")


def test_reload(tmp):
    conf = os.path.join(tmp, "reload.conf")
    path = os.path.join(tmp, "reload.sock")
    log = os.path.join(tmp, "reload.log")
    with open(conf, "w") as f:
        f.write("[limits]\nmax_names = 2\n")
    ns = Notify(os.path.join(tmp, "reload.notify"))
    with open(log, "w") as logf:
        d = start(["-c", conf, "-s", path],
                  env=dict(os.environ, NOTIFY_SOCKET=ns.path), stderr=logf)
    check("the daemon starts (READY=1)", ns.wait("READY=1"))
    c = Client(path)
    c.call("register", "a")
    c.call("register", "b")
    err, _ = c.call("register", "c")
    check("the file's limit applies", err is not None and err[0] == "limit")
    with open(conf, "w") as f:
        f.write("[limits]\nmax_names = 3\n")
    d.send_signal(signal.SIGHUP)
    check("SIGHUP: the daemon reloads (RELOADING=1, READY=1)", ns.reloaded())
    check("after SIGHUP the new limit applies to new requests",
          c.call("register", "c")[0] is None)
    check("existing registrations stay",
          c.call("whereis", "a")[1] is not None)
    with open(conf, "w") as f:
        f.write("[limits]\nmax_names = many\n")
    d.send_signal(signal.SIGHUP)
    # Without waiting for the reload to end, the check below would pass
    # as well when the daemon had not read the file yet.
    check("SIGHUP with an invalid file: RELOADING=1, READY=1",
          ns.reloaded())
    with open(log) as f:
        check("the refusal is logged", "is invalid" in f.read())
    err, _ = c.call("register", "d")
    check("an invalid file is refused and the old limit kept",
          err is not None and err[0] == "limit")
    c.sock.close()
    check("the daemon exits 0", stop(d) == 0)
    ns.sock.close()


def test_activation(tmp):
    if shutil.which("systemd-socket-activate") is None:
        results["skipped"] += 1
        print("skip   systemd-socket-activate not installed")
        return
    path = os.path.join(tmp, "act.sock")
    logp = os.path.join(tmp, "act.log")
    logf = open(logp, "w")
    act = subprocess.Popen(["systemd-socket-activate", "-l", path, DAEMON],
                           stderr=logf)
    logf.close()
    ok = eventually(lambda: os.path.exists(path))
    check("systemd-socket-activate listens", ok)
    c = Client(path)
    err, hello = c.call("hello")
    check("a client's connection starts the daemon, which answers",
          err is None and hello["server"] == "procreg")
    c.call("register", "activated")
    c.sock.close()
    act.send_signal(signal.SIGTERM)
    code = act.wait(timeout=10)
    check("the activated daemon exits 0", code == 0)
    check("it leaves the socket it was handed in place",
          os.path.exists(path))
    with open(logp) as f:
        log = f.read()
    check("it logs the path of the socket it was handed",
          "listening on %s (from systemd)" % path in log)


def test_notify(tmp):
    npath = os.path.join(tmp, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(npath)
    ns.settimeout(10)
    path = os.path.join(tmp, "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=npath, WATCHDOG_USEC="200000",
               WATCHDOG_PID=str(0))
    # WATCHDOG_PID must be the daemon's own pid: start it via sh exec.
    d = subprocess.Popen(["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"',
                          DAEMON, "-s", path], env=env,
                         stderr=subprocess.DEVNULL)
    msgs = []

    def got(word):
        while not any(word in m for m in msgs):
            try:
                msgs.append(ns.recv(4096).decode())
            except socket.timeout:
                return False
        return True

    check("READY=1 once listening", got("READY=1"))
    check("STATUS= with live counts", any("STATUS=" in m and "names" in m
                                          for m in msgs))
    check("WATCHDOG=1 pings from the loop", got("WATCHDOG=1"))
    d.send_signal(signal.SIGHUP)
    check("RELOADING=1 on SIGHUP", got("RELOADING=1"))
    d.send_signal(signal.SIGTERM)
    check("STOPPING=1 on SIGTERM", got("STOPPING=1"))
    check("then exit 0", d.wait(timeout=10) == 0)
    ns.close()


def test_shutdown(tmp):
    path = os.path.join(tmp, "stop.sock")
    d = start(["-s", path])
    eventually(lambda: accepts(path))
    c = Client(path)
    c.call("register", "leaving")
    watcher = Client(path)
    watcher.call("monitor", "leaving")
    d.send_signal(signal.SIGTERM)
    got = c.rest()
    check("SIGTERM: every client gets [2, \"shutdown\", [\"terminated\"]] "
          "and then EOF", got == [[2, "shutdown", ["terminated"]]])
    seen = watcher.rest()
    check("no down for names that vanish with the daemon",
          seen == [[2, "shutdown", ["terminated"]]])
    check("exit 0", d.wait(timeout=10) == 0)
    check("the socket file is removed", not os.path.exists(path))
    d = start(["-s", path])
    eventually(lambda: accepts(path))
    c = Client(path)
    c.call("stats")
    d.send_signal(signal.SIGINT)
    got = c.rest()
    check("SIGINT: shutdown \"interrupted\", then EOF",
          got == [[2, "shutdown", ["interrupted"]]])
    check("exit 0", d.wait(timeout=10) == 0)


AS_USER = r"""
import json, socket, sys, msgpack
path, calls, nconns = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
out = []
conns = []
for i in range(nconns):
    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
    conns.append(s)
s, u = conns[0], msgpack.Unpacker(raw=False)
for i, (method, params) in enumerate(calls):
    s.sendall(msgpack.packb([0, i + 1, method, params]))
    while True:
        obj = next(u, None)
        if obj is not None:
            break
        u.feed(s.recv(65536))
    out.append([obj[2], obj[3]])
# the last extra connection: what does it get?
extra = []
if nconns > 1:
    last, lu = conns[-1], msgpack.Unpacker(raw=False)
    while True:
        data = last.recv(65536)
        if not data:
            extra.append("EOF")
            break
        lu.feed(data)
        extra.extend(lu)
print(json.dumps({"calls": out, "extra": extra}))
"""


def run_as(uid, path, calls, nconns=1):
    """The calls as uid (gid the same), an unprivileged process: no
    supplementary groups, not even root's (the daemon reads the peer's
    real groups)."""
    import json
    r = subprocess.run(["/usr/bin/python3", "-c", AS_USER, path,
                        json.dumps(calls), str(nconns)],
                       preexec_fn=lambda: (os.setgroups([]), os.setgid(uid),
                                           os.setuid(uid)),
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        print(r.stderr)
        return None
    return json.loads(r.stdout)


def err_code(res):
    return res[0][0] if res[0] else None


def test_policy(tmp):
    if os.getuid() != 0:
        results["skipped"] += 1
        print("skip   policy tests need root (to act as another uid)")
        return
    os.chmod(tmp, 0o755)
    conf = os.path.join(tmp, "policy.conf")
    path = os.path.join(tmp, "policy.sock")
    rules = ("[limits]\nmax_names_per_uid = 3\nmax_conns_per_uid = 3\n"
             "[policy]\nrule = deny uid:1000 app.*\n"
             "rule = allow * user.${uid}.*\nrule = deny * user.*\n"
             "default = allow\n")
    with open(conf, "w") as f:
        f.write(rules)
    d = start(["-c", conf, "-s", path])
    try:
        policy_checks(d, conf, path, rules)
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
    r = subprocess.run([DAEMON, "--check-config", "-c", "/dev/stdin"],
                       input="[policy]\nrule = maybe * x\nrule = allow "
                       "group:no-such-group-xyz x\n", capture_output=True,
                       text=True, timeout=10)
    check("--check-config names bad rules by line", r.returncode == 2
          and ":2:" in r.stderr and ":3:" in r.stderr)


def policy_checks(d, conf, path, rules):
    """The policy, per-uid caps, evict and reload against daemon d.  The
    caps (three connections, three names per uid) bind uid 1000, an
    unprivileged user; root, an administrator, is exempt from them."""
    eventually(lambda: accepts(path))
    out = run_as(1000, path, [["register", ["app.x"]],
                              ["register", ["user.1000.a"]],
                              ["register", ["user.0.a"]],
                              ["register", ["free.1"]],
                              ["register", ["user.1000.b"]],
                              ["register", ["user.1000.c"]]])
    calls = out["calls"] if out else []
    check("a rule denies uid 1000 app.*: forbidden naming the rule",
          len(calls) == 6 and err_code(calls[0]) == "forbidden"
          and "rule 1" in calls[0][0][1])
    check("${uid} in a pattern: user.1000.* is uid 1000's",
          len(calls) == 6 and calls[1][0] is None)
    check("and user.0.* is not (rule 3)", len(calls) == 6
          and err_code(calls[2]) == "forbidden" and "rule 3" in
          calls[2][0][1])
    check("no rule matches: the default allows", len(calls) == 6
          and calls[3][0] is None)
    check("max_names_per_uid caps a user's names", len(calls) == 6
          and calls[4][0] is None and err_code(calls[5]) == "limit")
    root = Client(path)
    check("root is not uid 1000: app.x is allowed",
          root.call("register", "app.x")[0] is None)
    out = run_as(1000, path, [["stats", []]], nconns=4)
    check("max_conns_per_uid: the fourth connection gets limit, then EOF",
          out is not None and out["extra"][:1] and
          out["extra"][0][:2] == [2, "error"]
          and out["extra"][0][2][0] == "limit" and out["extra"][-1] == "EOF")
    # Administrators are exempt from the per-uid caps: root, holding one
    # connection and one name (app.x), opens four more and registers
    # three more names, past both caps of three.
    extra, outcome = [], []
    for i in range(4):
        c = Client(path)
        extra.append(c)
        try:
            outcome.append(c.call("register", "root.%d" % i)[0])
        except (EOFError, OSError):
            outcome.append("EOF")
    check("root is exempt from max_conns_per_uid: five connections",
          outcome[:2] == [None, None] and "EOF" not in outcome)
    check("root is exempt from max_names_per_uid: five names",
          outcome == [None] * 4)
    for c in extra:
        c.sock.close()
    # evict: an administrator removes a name; its monitors fire evicted
    holder, watcher = Client(path), Client(path)
    holder.call("register", "victim")
    _, ref = watcher.call("monitor", "victim")
    out = run_as(1000, path, [["evict", ["victim"]]])
    check("evict by a plain user is forbidden", out is not None
          and err_code(out["calls"][0]) == "forbidden")
    err, res = root.call("evict", "victim")
    check("evict by root removes the name", err is None and res is True
          and root.call("whereis", "victim")[1] is None)
    got = []
    while not got:
        watcher.unpacker.feed(watcher.sock.recv(65536))
        got = list(watcher.unpacker)
    check("its monitor fires with reason evicted",
          got == [[2, "down", [ref, "victim", "evicted"]]])
    check("the holder's connection stays open",
          holder.call("stats")[0] is None)
    check("evict of a missing name is not_found",
          root.call("evict", "victim")[0][0] == "not_found")
    # reload: a changed policy applies to the next request
    with open(conf, "w") as f:
        f.write(rules.replace("rule = deny uid:1000 app.*\n", ""))
    d.send_signal(signal.SIGHUP)
    ok = eventually(lambda: (lambda o: o is not None and
                             o["calls"][0][0] is None)(
        run_as(1000, path, [["register", ["app.y"]]])), timeout=10)
    check("after SIGHUP the changed policy applies", ok)
    for c in (root, holder, watcher):
        c.sock.close()
    check("exit 0", stop(d) == 0)


def test_socket_mode(tmp):
    path = os.path.join(tmp, "mode.sock")
    d = start(["-s", path, "--socket-mode", "0640"])
    eventually(lambda: accepts(path))
    check("--socket-mode sets the socket file's mode",
          stat.S_IMODE(os.stat(path).st_mode) == 0o640)
    check("exit 0", stop(d) == 0)
    r = subprocess.run([DAEMON, "-s", path, "--socket-group",
                        "no-such-group-xyz"], capture_output=True, text=True,
                       timeout=10)
    check("an unknown socket_group stops the start (exit 1)",
          r.returncode == 1 and "no group" in r.stderr)


# ---- [cluster] (issue 14): the settings only; the cluster itself is
# tested against etcd elsewhere. ----

URL_FORM = ("expected http://HOST:PORT or https://HOST:PORT, separated by "
            "commas (HOST a name, a numeric IPv4 or [IPv6] address; PORT "
            "from 1 to 65535), not ")
NODE_FORM = ("expected 1 to 63 bytes of letters, digits, '.', '_' and '-', "
             "not starting with '.' or '-'")
PREFIX_FORM = ("expected 2 to 127 bytes of printable ASCII without spaces, "
               "starting and ending with '/'")


def check_config(tmp, text, *args):
    """procregd --check-config on a file holding text, then args:
    (exit status, stdout, stderr lines, the file's path)."""
    path = os.path.join(tmp, "cluster.conf")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([DAEMON, "--check-config", "-c", path] + list(args),
                       capture_output=True, text=True, timeout=10)
    return r.returncode, r.stdout, r.stderr.strip().splitlines(), path


def test_cluster_config(tmp):
    # Good values, in the file and as flags.
    good_urls = [
        "http://127.0.0.1:2379", "https://etcd-1.example.com:2379/",
        "http://[::1]:2379", "http://[fd00::2]:1/", "http://etcd_2:65535",
        ",".join("http://10.0.0.%d:2379" % i for i in range(1, 9)),
    ]
    for url in good_urls:
        rc, out, err, path = check_config(
            tmp, "[cluster]\netcd = %s\nnode = n1\n" % url)
        check("[cluster] etcd = %s is accepted" % url,
              rc == 0 and out.strip() == path + ": ok" and not err)
        rc, out, err, path = check_config(tmp, "", "--etcd", url,
                                          "--node", "n1")
        check("--etcd %s is accepted" % url, rc == 0 and not err)
    text = ("[cluster]\netcd = http://10.0.0.1:2379,http://10.0.0.2:2379\n"
            "node = web-1.a_b\ncluster_prefix = /apps/procreg/\n"
            "lease_ttl = 2\netcd_timeout = 60000\n")
    rc, out, err, path = check_config(tmp, text)
    check("a whole [cluster] section with http:// endpoints is accepted",
          rc == 0 and not err)
    for flag, value in (("--node", "a" * 63), ("--node", "A.b_c-9"),
                        ("--cluster-prefix", "//"),
                        ("--cluster-prefix", "/" + "x" * 125 + "/"),
                        ("--cluster-prefix", "/a:b@c=d/"),
                        ("--lease-ttl", "3600"), ("--etcd-timeout", "100")):
        rc, out, err, path = check_config(tmp, "", "--etcd",
                                          "http://a:1", "--node", "n1",
                                          flag, value)
        check("%s %s is accepted" % (flag, value), rc == 0 and not err)

    # Bad values: FILE:LINE: key: why in the file, --flag: why on the
    # command line, the same why.
    bad = [
        ("etcd", "http://a", URL_FORM + "'http://a'"),
        ("etcd", "http://a:0", URL_FORM + "'http://a:0'"),
        ("etcd", "http://a:65536", URL_FORM + "'http://a:65536'"),
        ("etcd", "http://a:+80", URL_FORM + "'http://a:+80'"),
        ("etcd", "http://a: 80", URL_FORM + "'http://a: 80'"),
        ("etcd", "http://a:80x", URL_FORM + "'http://a:80x'"),
        ("etcd", "ftp://a:80", URL_FORM + "'ftp://a:80'"),
        ("etcd", "HTTP://a:80", URL_FORM + "'HTTP://a:80'"),
        ("etcd", "a:2379", URL_FORM + "'a:2379'"),
        ("etcd", "http://:2379", URL_FORM + "'http://:2379'"),
        ("etcd", "http://1.2.3.999:2379", URL_FORM +
         "'http://1.2.3.999:2379'"),
        ("etcd", "http://::1:2379", URL_FORM + "'http://::1:2379'"),
        ("etcd", "http://[::g]:2379", URL_FORM + "'http://[::g]:2379'"),
        ("etcd", "http://a..b:2379", URL_FORM + "'http://a..b:2379'"),
        ("etcd", "http://-a:2379", URL_FORM + "'http://-a:2379'"),
        ("etcd", "http://u@a:2379", URL_FORM + "'http://u@a:2379'"),
        ("etcd", "http://a:2379/v3", URL_FORM + "'http://a:2379/v3'"),
        ("etcd", "http://a:2379//", URL_FORM + "'http://a:2379//'"),
        ("etcd", "http://a:1,", URL_FORM + "''"),
        ("etcd", "http://a:1,,http://b:2", URL_FORM + "''"),
        ("etcd", "http://a:1, http://b:2", URL_FORM + "' http://b:2'"),
        ("etcd", ",".join("http://h%d:1" % i for i in range(9)),
         "expected at most 8 URLs"),
        ("node", "-x", NODE_FORM),
        ("node", ".x", NODE_FORM),
        ("node", "a b", NODE_FORM),
        ("node", "a/b", NODE_FORM),
        ("node", "a" * 64, NODE_FORM),
        ("cluster_prefix", "/", PREFIX_FORM),
        ("cluster_prefix", "procreg/", PREFIX_FORM),
        ("cluster_prefix", "/procreg", PREFIX_FORM),
        ("cluster_prefix", "/a b/", PREFIX_FORM),
        ("cluster_prefix", "/\u00e9/", PREFIX_FORM),
        ("cluster_prefix", "/" + "x" * 126 + "/", PREFIX_FORM),
        ("lease_ttl", "1", "expected a number from 2 to 3600"),
        ("lease_ttl", "3601", "expected a number from 2 to 3600"),
        ("etcd_timeout", "99", "expected a number from 100 to 60000"),
        ("etcd_timeout", "60001", "expected a number from 100 to 60000"),
    ]
    for key, value, why in bad:
        rc, out, err, path = check_config(tmp, "[cluster]\n%s = %s\n" %
                                          (key, value))
        check("[cluster] %s = %r is refused: %s" % (key, value, why),
              rc == 2 and err == ["%s:2: %s: %s" % (path, key, why)])
        flag = "--" + key.replace("_", "-")
        rc, out, err, path = check_config(tmp, "", flag, value)
        check("... and %s %r, worded alike" % (flag, value),
              rc == 2 and err == ["procregd: %s: %s" % (flag, why)])

    # Without etcd the daemon is single-host: the other keys are checked
    # one by one, then ignored, however they combine.
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd =\nnode = n1\ncluster_prefix = /x/\n"
        "lease_ttl = 30\netcd_timeout = 500\netcd_ca = /nonexistent/ca\n"
        "etcd_cert = /nonexistent/cert\n")
    check("without etcd the other [cluster] keys are accepted, even TLS "
          "files that do not exist and a certificate without its key",
          rc == 0 and not err)

    # TLS files need an https:// endpoint; a certificate needs its key.
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd = http://a:1,http://b:2\nnode = n1\n"
        "etcd_ca = /etc/hostname\netcd_cert = /etc/hostname\n"
        "etcd_key = /etc/hostname\n")
    why = "only applies to https:// endpoints, and etcd has none"
    check("TLS files with http:// endpoints only: one error each, by line",
          rc == 2 and err == ["%s:%d: %s: %s" % (path, n, k, why) for n, k in
                              ((4, "etcd_ca"), (5, "etcd_cert"),
                               (6, "etcd_key"))])
    rc, out, err, path = check_config(tmp, "", "--etcd", "http://a:1",
                                      "--node", "n1", "--etcd-ca",
                                      "/etc/hostname")
    check("... and as a flag, worded alike",
          rc == 2 and err == ["procregd: --etcd-ca: " + why])
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd = http://a:1\nnode = n1\n"
        "etcd_ca = /etc/hostname\n", "--etcd", "http://a:1,https://b:2")
    check("one https:// endpoint among others is enough (and the flag "
          "wins over the key)", rc == 0 and not err)
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd = https://a:1\nnode = n1\n"
        "etcd_cert = /etc/hostname\n")
    check("etcd_cert without etcd_key is refused",
          rc == 2 and err == ["%s:4: etcd_cert: must be given with etcd_key "
                              "(--etcd-key): a client certificate and its "
                              "key go together" % path])
    rc, out, err, path = check_config(tmp, "", "--etcd", "https://a:1",
                                      "--node", "n1", "--etcd-key",
                                      "/etc/hostname")
    check("--etcd-key without --etcd-cert is refused",
          rc == 2 and err == ["procregd: --etcd-key: must be given with "
                              "etcd_cert (--etcd-cert): a client "
                              "certificate and its key go together"])
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd = https://a:1\nnode = n1\n"
        "etcd_ca = /etc/hostname\netcd_cert = /etc/hostname\n"
        "etcd_key = /etc/hostname\n")
    check("https:// with a readable CA, certificate and key is accepted",
          rc == 0 and not err)

    # --check-config reads the TLS files: the errno text, by line.
    missing = os.path.join(tmp, "missing.pem")
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd = https://a:1\nnode = n1\n"
        "etcd_ca = %s\netcd_cert = /etc/hostname\netcd_key = %s\n" %
        (missing, missing))
    check("--check-config names each TLS file it cannot read, with the "
          "errno text",
          rc == 2 and err == ["%s:%d: %s: %s: No such file or directory" %
                              (path, n, k, missing) for n, k in
                              ((4, "etcd_ca"), (6, "etcd_key"))])
    rc, out, err, path = check_config(tmp, "", "--etcd", "https://a:1",
                                      "--node", "n1", "--etcd-ca", missing)
    check("... and for a flag",
          rc == 2 and err == ["procregd: --etcd-ca: %s: No such file or "
                              "directory" % missing])

    # All the errors of a file at once, each with its line.
    rc, out, err, path = check_config(
        tmp, "[cluster]\netcd = http://a\nnode = -\nlease_ttl = 0\n"
        "etcd_timeout = x\ncluster_prefix = x\nbogus = 1\n")
    check("every [cluster] error of a file is reported, by line",
          rc == 2 and [l[len(path) + 1:].split(":")[0] for l in err] ==
          ["2", "3", "4", "5", "6", "7"])

    # --help lists the options within 80 columns.
    r = subprocess.run([DAEMON, "--help"], capture_output=True, text=True,
                       timeout=10)
    check("--help lists the cluster options within 80 columns",
          r.returncode == 0 and all(
              re.search(r"^\s+--%s\b" % o, r.stdout, re.M) for o in
              ("etcd", "node", "cluster-prefix", "lease-ttl",
               "etcd-timeout", "etcd-ca", "etcd-cert", "etcd-key")) and
          max(len(l) for l in r.stdout.splitlines()) <= 80)

    # The shipped file with etcd and node uncommented is valid.
    shipped = os.path.join(ROOT, "conf", "procreg.conf")
    if os.path.exists(shipped):
        with open(shipped) as f:
            text = re.sub(r"(?m)^#((etcd|node) = )", r"\1", f.read())
        rc, out, err, path = check_config(tmp, text)
        check("conf/procreg.conf with etcd and node uncommented is valid",
              rc == 0 and not err)

    test_cluster_node(tmp)


HOSTNAME_PROBE = r"""
import socket, subprocess, sys
socket.sethostname(sys.argv[1])
r = subprocess.run(sys.argv[2:], capture_output=True, text=True,
                   timeout=10)
sys.stdout.write("%d\n%s" % (r.returncode, r.stderr))
"""


def test_cluster_node(tmp):
    """The node name defaults to the host name up to its first '.': in a
    user and UTS namespace of our own (unshare), where we may set it."""
    unshare = shutil.which("unshare")
    probe = [unshare, "-r", "-u", sys.executable, "-c", HOSTNAME_PROBE]
    if unshare is None or subprocess.run(
            probe + ["probe.example", "true"], capture_output=True,
            timeout=10).returncode != 0:
        results["skipped"] += 1
        print("skip   the node name from the host name: cannot unshare "
              "a UTS namespace")
        return
    conf = os.path.join(tmp, "empty.conf")
    open(conf, "w").close()
    cmd = [DAEMON, "--check-config", "-c", conf, "--etcd", "http://a:1"]

    def with_host(host, *args):
        r = subprocess.run(probe + [host] + cmd + list(args),
                           capture_output=True, text=True, timeout=20)
        rc, _, err = r.stdout.partition("\n")
        return int(rc or -1), err.strip()

    for host in ("web1", "web-1.example.com", "a" * 61 + ".x"):
        rc, err = with_host(host)
        check("the host name %r gives the node name" % host,
              rc == 0 and not err)
    for host in ("bad_host!", "-web1.example.com", ".example.com",
                 "a" * 64):
        rc, err = with_host(host)
        check("the host name %r gives no node name: an error telling to "
              "set --node" % host,
              rc == 2 and err.startswith(
                  "procregd: the host name '%s' up to its first '.' is no "
                  "node name (" % host) and
              err.endswith("set --node or node in [cluster]"))
        rc, err = with_host(host, "--node", "n1")
        check("... unless --node is set", rc == 0 and not err)
    rc, err = with_host("bad_host!", "--etcd", "")
    check("... and without etcd the host name does not matter",
          rc == 0 and not err)


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-service.")
    try:
        test_check_config(tmp)
        test_reload(tmp)
        test_activation(tmp)
        test_notify(tmp)
        test_shutdown(tmp)
        test_policy(tmp)
        test_socket_mode(tmp)
        test_cluster_config(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("service: %d passed, %d failed, %d skipped" % (
        results["passed"], results["failed"], results["skipped"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
