#!/usr/bin/python3
"""procregctl, the command-line tool, against a real procregd.

Starts procregd on a private socket (with small max-message and
max-outbuf, so that too_large and busy are easy to reach), runs every
command and checks its output and exit status, using a plain Python
msgpack-RPC client as the other side: it registers names for whereis and
list, receives what procregctl sends, and sends to what procregctl holds.
Every wait is bounded; nothing is timed."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DAEMON = os.environ.get("PROCREGD", os.path.join(ROOT, "procregd"))
CTL = os.environ.get("PROCREGCTL", os.path.join(ROOT, "procregctl"))
COMMANDS = ["whereis", "list", "send", "hold", "recv", "monitor", "stats",
            "ping"]
STATS_KEYS = ["connections", "names", "monitors", "requests", "messages",
              "downs", "notifications_ignored", "connections_total",
              "uptime_ms"]
MAX_MESSAGE = 65536
MAX_OUTBUF = 65536


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.pushes = []

    def recv(self):
        for obj in self.unpacker:
            return obj
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.unpacker.feed(data)
            for obj in self.unpacker:
                return obj

    def call(self, method, *params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)]))
        while True:
            msg = self.recv()
            if msg[0] == 2:
                self.pushes.append(msg)
                continue
            kind, msgid, error, result = msg
            assert (kind, msgid) == (1, self.msgid), (kind, msgid)
            if error is not None:
                raise RuntimeError(error[0])
            return result

    def push(self):
        """The next notification (bounded by the socket timeout)."""
        if self.pushes:
            return self.pushes.pop(0)
        return self.recv()

    def close(self):
        self.sock.close()


results = {"passed": 0, "failed": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what, flush=True)


def eventually(pred, timeout=10.0):
    """Poll pred until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


class Result:
    """What a finished procregctl did (rc None: it did not finish)."""

    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return f"rc={self.rc} out={self.out!r} err={self.err!r}"


class Ctl:
    """procregctl against one socket."""

    def __init__(self, path):
        self.path = path

    def argv(self, args):
        return [CTL, "-s", self.path] + list(args)

    def run(self, *args, timeout=10, env=None, raw=False):
        argv = list(args) if raw else self.argv(args)
        try:
            p = subprocess.run(argv, capture_output=True, timeout=timeout,
                               env=env)
        except subprocess.TimeoutExpired:
            return Result(None, "", "timed out")
        return Result(p.returncode, p.stdout.decode(errors="replace"),
                      p.stderr.decode(errors="replace"))

    def spawn(self, *args):
        return Bg(self.argv(args))


class Bg:
    """A procregctl in the background, its output read line by line."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.buf = b""
        self.err = b""
        self.eof = False

    def readline(self, timeout=10.0):
        """One line of stdout, or None when none came in time."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            data = os.read(fd, 65536)
            self.eof = not data
            self.buf += data
        if b"\n" not in self.buf:
            return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def finish(self, timeout=10.0):
        """Wait for the exit; all remaining output.  rc None: killed after
        the timeout."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            return Result(None, (self.buf + out).decode(errors="replace"),
                          (self.err + err).decode(errors="replace"))
        return Result(self.proc.returncode,
                      (self.buf + out).decode(errors="replace"),
                      (self.err + err).decode(errors="replace"))

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def children(pid):
    """Pids of the processes whose parent is pid."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parens.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def dead(pid):
    """True when pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def fields(text):
    """Aligned "key: value" lines as a dict."""
    d = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        d[k] = v.strip()
    return d


def start_daemon(path):
    daemon = subprocess.Popen([DAEMON, "-s", path, "--max-message",
                               str(MAX_MESSAGE), "--max-outbuf",
                               str(MAX_OUTBUF)], stderr=subprocess.DEVNULL)
    ok = eventually(lambda: os.path.exists(path))
    # The file appears at bind(); wait until the daemon answers.
    ok = ok and eventually(lambda: try_connect(path))
    return daemon, ok


def try_connect(path):
    try:
        c = Client(path)
    except OSError:
        return False
    c.call("hello")
    c.close()
    return True


def stop_daemon(daemon, label):
    daemon.send_signal(signal.SIGTERM)
    try:
        code = daemon.wait(timeout=10)
    except subprocess.TimeoutExpired:
        daemon.kill()
        code = daemon.wait()
    check(f"{label} exits 0 on SIGTERM", code == 0)


def wait_registered(cl, name, timeout=10.0):
    """The entry of name once it is registered, or None."""
    found = []

    def look():
        e = cl.call("whereis", name)
        if e is not None:
            found.append(e)
        return e is not None
    return found[0] if eventually(look, timeout) else None


def monitors_reach(cl, n):
    return eventually(lambda: cl.call("stats")["monitors"] >= n)


def test_usage(ctl):
    r = ctl.run("--help")
    check("--help exits 0", r.rc == 0)
    check("--help shows the usage, every command and the exit statuses",
          r.out.startswith("usage: procregctl")
          and all(f"\n  {c} " in r.out for c in COMMANDS)
          and "Exit status" in r.out and "\n  3 " in r.out)
    for c in COMMANDS:
        r = ctl.run(c, "--help")
        check(f"{c} --help exits 0 and prints its usage", r.rc == 0
              and r.out.startswith(f"usage: procregctl {c}")
              and "--socket" in r.out and r.err == "")
    r = ctl.run("--version")
    check("--version", r.rc == 0
          and r.out == "procregctl 0.1.0 (protocol 1)\n")
    r = ctl.run("frobnicate")
    check("an unknown command exits 2 with a hint", r.rc == 2
          and "unknown command" in r.err and "--help" in r.err
          and r.out == "")
    check("no command exits 2", ctl.run().rc == 2)
    r = ctl.run("whereis")
    check("a missing operand exits 2", r.rc == 2
          and r.err.startswith("procregctl: "))
    check("an extra operand exits 2", ctl.run("whereis", "a", "b").rc == 2)
    check("send without a payload exits 2", ctl.run("send", "x").rc == 2)
    check("hold without a command exits 2", ctl.run("hold", "x").rc == 2)
    check("an unknown option exits 2", ctl.run("stats", "--bogus").rc == 2)
    check("an option of another command exits 2",
          ctl.run("whereis", "--count", "2", "x").rc == 2)
    check("a bad --count exits 2",
          ctl.run("recv", "x", "--count", "zero").rc == 2)
    check("a bad -t exits 2", ctl.run("-t", "-5", "stats").rc == 2)
    check("an empty name exits 2", ctl.run("whereis", "").rc == 2)
    check("a name of 256 bytes exits 2", ctl.run("whereis", "n" * 256).rc == 2)
    check("invalid JSON for --json-payload exits 2",
          ctl.run("send", "--json-payload", "x", "{nope").rc == 2)


def test_unreachable(ctl, tmp):
    r = Ctl("/nonexistent.sock").run("ping")
    check("an unreachable daemon exits 3", r.rc == 3
          and r.err.startswith("procregctl: ") and r.out == "")
    check("whereis against no daemon exits 3",
          Ctl("/nonexistent.sock").run("whereis", "x").rc == 3)
    # A daemon that accepts and never answers: the timeout is exit 4.
    path = os.path.join(tmp, "mute.sock")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(8)
    r = Ctl(path).run("-t", "200", "ping")
    check("no reply within -t exits 4", r.rc == 4 and "timed out" in r.err)
    mute.close()
    # One that closes every connection at once: connection lost, exit 3.
    rude = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path2 = os.path.join(tmp, "rude.sock")
    rude.bind(path2)
    rude.listen(8)
    stop = threading.Event()

    def slam():
        rude.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = rude.accept()
                c.close()
            except OSError:
                pass
    t = threading.Thread(target=slam)
    t.start()
    r = Ctl(path2).run("stats")
    stop.set()
    t.join()
    rude.close()
    check("a connection closed by the daemon exits 3", r.rc == 3)


def fake_daemon(path):
    """A one-connection daemon that answers hello and register, sends a
    message push in the same write as the register reply, and closes."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(10)

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        c.settimeout(10)
        u = msgpack.Unpacker(raw=False)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                u.feed(data)
                for req in u:
                    if req[2] == "hello":
                        c.sendall(msgpack.packb([1, req[1], None, {
                            "server": "procreg", "version": "0.1.0",
                            "protocol": 1, "conn": 1, "boot": "0" * 32,
                            "max_message": 1 << 20}]))
                        continue
                    entry = {"name": req[3][0], "conn": 1, "pid": 1,
                             "uid": 0, "gid": 0, "value": None, "since": 1}
                    c.sendall(msgpack.packb([1, req[1], None, entry])
                              + msgpack.packb([2, "message", [
                                  req[3][0], 9, "last words"]]))
                    raise EOFError
        except (OSError, EOFError):
            pass
        c.close()
    t = threading.Thread(target=serve)
    t.start()
    return srv, t


def test_last_words(tmp):
    """A message that arrives with a reply, just before the daemon closes
    the connection, is still printed."""
    path = os.path.join(tmp, "fake.sock")
    srv, t = fake_daemon(path)
    r = Ctl(path).run("recv", "x")
    t.join()
    srv.close()
    check("recv prints a message that came just before the close, exit 3",
          r.rc == 3 and r.out == "last words\n")


def test_ping_stats(ctl, path):
    r = ctl.run("ping")
    check("ping prints a pong", r.rc == 0 and re.fullmatch(
        r"pong from procreg 0\.1\.0 \(protocol 1, conn \d+\): "
        r"\d+\.\d{3} ms\n", r.out) is not None)
    r = ctl.run("--json", "ping")
    try:
        j = json.loads(r.out)
    except ValueError:
        j = {}
    check("ping --json", r.rc == 0 and j.get("version") == "0.1.0"
          and j.get("protocol") == 1 and isinstance(j.get("conn"), int)
          and isinstance(j.get("rtt_ms"), (int, float)))
    r = ctl.run("ping", "-c", "3", "-i", "0")
    check("ping -c 3 pings three times", r.rc == 0
          and len(r.out.splitlines()) == 3)
    env = dict(os.environ, PROCREG_SOCKET=path)
    r = ctl.run(CTL, "ping", raw=True, env=env)
    check("the default socket honours $PROCREG_SOCKET", r.rc == 0
          and r.out.startswith("pong"))

    r = ctl.run("stats")
    lines = r.out.splitlines()
    parsed = [line.split() for line in lines]
    check("stats prints the nine counters in order", r.rc == 0
          and [p[0] for p in parsed] == STATS_KEYS
          and all(p[1].isdigit() for p in parsed))
    check("stats aligns its values", len({line.index(p[1], len(p[0]))
                                          for line, p in zip(lines, parsed)})
          == 1)
    r = ctl.run("stats", "--json")
    try:
        j = json.loads(r.out)
    except ValueError:
        j = {}
    check("stats --json is an object of the nine counters", r.rc == 0
          and list(j) == STATS_KEYS
          and all(isinstance(v, int) for v in j.values())
          and j["connections"] >= 1)


def test_whereis_list(ctl, a, b):
    a_conn = a.call("hello", "cli-test-a")["conn"]
    entry = a.call("register", "cli/db", {"port": 5432})
    r = ctl.run("whereis", "cli/db")
    f = fields(r.out)
    check("whereis finds a name", r.rc == 0 and r.err == "")
    check("whereis prints every field", list(f) == [
        "name", "conn", "pid", "uid", "gid", "value", "since"]
        and f["name"] == "cli/db" and f["conn"] == str(a_conn)
        and f["pid"] == str(os.getpid()) and f["uid"] == str(os.getuid())
        and f["gid"] == str(os.getgid()))
    check("whereis prints the value as JSON",
          json.loads(f.get("value", "null")) == {"port": 5432})
    check("whereis prints since as ISO 8601 UTC", re.match(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", f.get("since", ""))
        is not None)
    check("whereis aligns its values", len({
        len(line) - len(line.partition(":")[2].lstrip())
        for line in r.out.splitlines()}) == 1)
    r = ctl.run("--json", "whereis", "cli/db")
    j = json.loads(r.out) if r.rc == 0 else {}
    check("whereis --json parses back", r.rc == 0 and j == {
        "name": "cli/db", "conn": a_conn, "pid": os.getpid(),
        "uid": os.getuid(), "gid": os.getgid(), "value": {"port": 5432},
        "since": entry["since"]})
    check("--json works after the command too",
          json.loads(ctl.run("whereis", "cli/db", "--json").out) == j)
    r = ctl.run("whereis", "cli/missing")
    check("whereis of a missing name exits 1", r.rc == 1 and r.out == ""
          and r.err == "procregctl: cli/missing: not registered\n")
    check("whereis --json of a missing name exits 1",
          ctl.run("--json", "whereis", "cli/missing").rc == 1)

    b.call("register", "cli/list/b", [1, 2])
    a.call("register", "cli/list/a")
    a.call("register", "cli/list/long-name-here", "text value")
    r = ctl.run("list", "cli/list/")
    lines = r.out.splitlines()
    header = lines[0].split() if lines else []
    check("list prints the header", r.rc == 0
          and header == ["NAME", "CONN", "PID", "UID", "VALUE", "AGE"])
    rows = [line.split(None, 4) for line in lines[1:]]
    check("list prints a row per name, in name order",
          [row[0] for row in rows] == ["cli/list/a", "cli/list/b",
                                       "cli/list/long-name-here"])
    starts = [lines[0].index(h) for h in header] if header else []
    check("list aligns its columns to the content", lines and all(
        all(line[s - 1] == " " and line[s] != " " for s in starts[1:])
        for line in lines[1:]) and starts[1] == len(
            "cli/list/long-name-here") + 2)
    check("list rows hold conn, pid, uid, value and age", len(rows) == 3
          and rows[1][1] == str(b.call("hello")["conn"])
          and rows[0][2] == str(os.getpid()) and rows[0][3] == str(
              os.getuid())
          and re.fullmatch(r"\[1,2\]\s+\d+[smhd]", rows[1][4]) is not None
          and re.fullmatch(r"null\s+\d+[smhd]", rows[0][4]) is not None
          and re.fullmatch(r'"text value"\s+\d+[smhd]', rows[2][4])
          is not None)
    r = ctl.run("--json", "list", "cli/list/")
    j = json.loads(r.out) if r.rc == 0 else []
    check("list --json is an array of entries", r.rc == 0
          and [e["name"] for e in j] == ["cli/list/a", "cli/list/b",
                                         "cli/list/long-name-here"]
          and j[1]["value"] == [1, 2] and j[0]["value"] is None
          and j[0]["conn"] == a_conn and j[0]["pid"] == os.getpid())
    r = ctl.run("list", "cli/nothing/")
    check("list of no match prints the header only", r.rc == 0
          and len(r.out.splitlines()) == 1)
    r = ctl.run("--json", "list", "cli/nothing/")
    check("list --json of no match is []", r.rc == 0
          and json.loads(r.out) == [])
    r = ctl.run("list")
    check("list without a prefix lists every name", r.rc == 0
          and len(r.out.splitlines()) == 1 + 4)


def test_send(ctl, a, path):
    r = ctl.run("send", "cli/db", "hello")
    check("send exits 0 and prints nothing", r.rc == 0 and r.out == ""
          and r.err == "")
    m = a.push()
    check("send delivers a str", m[:2] == [2, "message"]
          and m[2][0] == "cli/db" and isinstance(m[2][1], int)
          and m[2][2] == "hello")
    doc = ('{"k": [1, -2, 3.5, true, false, null, "x"], "big": '
           '9223372036854775807, "neg": -9223372036854775808, '
           '"nested": {"a": {"b": []}}, "u": "h\\u00e9 \\u2603"}')
    r = ctl.run("send", "--json-payload", "cli/db", doc)
    m = a.push()
    check("send --json-payload delivers the JSON as msgpack", r.rc == 0
          and m[2][2] == json.loads(doc))
    check("the JSON object keeps its key order",
          list(m[2][2]) == ["k", "big", "neg", "nested", "u"])
    # The raw bytes: reals are float64 (cb), strings are str (not bin).
    a2 = Client(path)
    a2.call("register", "cli/raw")
    ctl.run("send", "--json-payload", "cli/raw", '[3.5, "s", 7]')
    a2.sock.settimeout(10)
    data = a2.sock.recv(65536)
    check("3.5 is packed as float64 and a string as str",
          b"\x93\xcb\x40\x0c\x00\x00\x00\x00\x00\x00\xa1s\x07" in data)
    a2.close()
    for text in ('"just a string"', "42", "null", "[]", "{}"):
        r = ctl.run("send", "--json-payload", "cli/db", text)
        m = a.push()
        check(f"send --json-payload {text}", r.rc == 0
              and m[2][2] == json.loads(text))
    r = ctl.run("send", "cli/db", "--", "-5")
    check("send NAME -- -5 sends a payload that starts with a dash",
          r.rc == 0 and a.push()[2][2] == "-5")
    r = ctl.run("send", "cli/missing", "x")
    check("send to a missing name exits 1", r.rc == 1 and r.out == ""
          and "cli/missing: not registered" in r.err)
    r = ctl.run("send", "cli/db", "a" * (MAX_MESSAGE + 100))
    check("a payload over max_message exits 4 (too_large)", r.rc == 4
          and "too_large" in r.err)

    # A holder that never reads: sends pile up until busy.
    slow = Client(path)
    slow.call("register", "cli/slow")
    r = None
    for _ in range(500):
        r = ctl.run("send", "cli/slow", "z" * 16000)
        if r.rc != 0:
            break
    check("send to a holder that does not read ends busy, exit 1",
          r.rc == 1 and "busy" in r.err)
    slow.close()


def test_hold(ctl, cl, path):
    h = ctl.spawn("hold", "cli/held", "--", "sleep", "30")
    e = wait_registered(cl, "cli/held")
    check("hold registers NAME", e is not None)
    check("the holder's pid is procregctl's", e is not None
          and e["pid"] == h.pid)
    r = ctl.run("whereis", "cli/held")
    check("whereis finds the held name", r.rc == 0
          and fields(r.out).get("pid") == str(h.pid))
    r = ctl.run("hold", "cli/held", "--", "true")
    check("hold of a taken name exits 1 and says who holds it",
          r.rc == 1 and e is not None and r.err == (
              f"procregctl: cli/held is held by conn {e['conn']} "
              f"(pid {h.pid})\n"))

    # hold keeps reading its connection: many messages, never stuck busy.
    sent = 0
    deadline = time.monotonic() + 20
    payload = "m" * 8000
    while sent < 200 and time.monotonic() < deadline:
        try:
            cl.call("send", "cli/held", payload)
            sent += 1
        except RuntimeError as err:
            if str(err) != "busy":
                break
            time.sleep(0.01)
    check("hold drains messages sent to NAME (200 x 8 kB, 3 x max-outbuf)",
          sent == 200)

    kids = []
    eventually(lambda: kids.extend(children(h.pid)) or kids)
    check("hold runs CMD as its child", len(kids) == 1)
    for k in kids:
        os.kill(k, signal.SIGKILL)
    r = h.finish()
    check("CMD killed by SIGKILL: hold exits 137", r.rc == 128 + 9)
    check("the name is released with CMD", cl.call("whereis", "cli/held")
          is None)

    r = ctl.run("hold", "cli/t", "--", "true")
    check("hold ... true exits 0", r.rc == 0 and r.out == "")
    check("and the name is gone afterwards", cl.call("whereis", "cli/t")
          is None)
    check("hold ... sh -c 'exit 7' exits 7",
          ctl.run("hold", "cli/t", "--", "sh", "-c", "exit 7").rc == 7)
    check("hold without -- runs CMD with its own options",
          ctl.run("hold", "cli/t", "sh", "-c", "exit 3").rc == 3)
    r = ctl.run("hold", "cli/t", "--", "/nonexistent/cmd")
    check("hold of a command that cannot run exits 127", r.rc == 127
          and "/nonexistent/cmd" in r.err)
    r = ctl.run("hold", "cli/t", "--", "sh", "-c", "ls -l /proc/$$/fd/")
    check("CMD inherits neither the lifeline socket nor the signalfd",
          r.rc == 0 and " 0 -> " in r.out and "socket:" not in r.out
          and "anon_inode:" not in r.out)
    r = ctl.run("hold", "cli/t", "--", "sh", "-c", "kill -TERM $$")
    check("CMD killed by SIGTERM: hold exits 143", r.rc == 143)

    # Values, and SIGTERM to procregctl passed on to CMD.
    h1 = ctl.spawn("hold", "--value", "hello", "cli/v", "--", "sleep", "30")
    h2 = ctl.spawn("hold", "cli/vj", "--json-value", "--value",
                   '{"a": [1, 2.5]}', "--", "sleep", "30")
    e1 = wait_registered(cl, "cli/v")
    e2 = wait_registered(cl, "cli/vj")
    check("hold --value registers a str value", e1 is not None
          and e1["value"] == "hello")
    check("hold --json-value registers the JSON value", e2 is not None
          and e2["value"] == {"a": [1, 2.5]})
    h1.signal(signal.SIGTERM)
    h2.signal(signal.SIGINT)
    r1, r2 = h1.finish(), h2.finish()
    check("SIGTERM to hold reaches CMD: exit 143", r1.rc == 128 + 15)
    check("SIGINT to hold reaches CMD: exit 130", r2.rc == 128 + 2)
    check("both names are gone", cl.call("whereis", "cli/v") is None
          and cl.call("whereis", "cli/vj") is None)

    # SIGKILL procregctl itself: the name goes, and so does CMD.
    h = ctl.spawn("hold", "cli/life", "--", "sleep", "30")
    e = wait_registered(cl, "cli/life")
    kids = []
    eventually(lambda: kids.extend(children(h.pid)) or kids)
    ref = cl.call("monitor", "cli/life")
    h.signal(signal.SIGKILL)
    r = h.finish()
    check("hold killed by SIGKILL", e is not None and r.rc == -9)
    check("its lifeline fires the monitor: disconnected",
          cl.push() == [2, "down", [ref, "cli/life", "disconnected"]])
    check("the name is released", cl.call("whereis", "cli/life") is None)
    check("CMD does not outlive procregctl (PDEATHSIG)", len(kids) == 1
          and eventually(lambda: dead(kids[0])))


def test_monitor(ctl, cl, path):
    r = ctl.run("monitor", "cli/missing")
    check("monitor of a missing name prints noproc, exit 1", r.rc == 1
          and r.out == "noproc\n")
    r = ctl.run("--json", "monitor", "cli/missing")
    check("monitor --json of a missing name", r.rc == 1
          and json.loads(r.out) == {"name": "cli/missing",
                                    "reason": "noproc"})

    base = cl.call("stats")["monitors"]
    h = ctl.spawn("hold", "cli/m", "--", "sleep", "30")
    wait_registered(cl, "cli/m")
    m = ctl.spawn("monitor", "cli/m")
    check("monitor sets its monitor", monitors_reach(cl, base + 1))
    h.signal(signal.SIGKILL)
    h.finish()
    r = m.finish()
    check("monitor wakes up when a hold is killed: disconnected",
          r.rc == 0 and r.out == "disconnected\n")

    child = subprocess.Popen([sys.executable, "-c", f"""
import socket, msgpack, time
s = socket.socket(socket.AF_UNIX); s.connect({path!r})
s.sendall(msgpack.packb([0, 1, "register", ["cli/victim"]]))
u = msgpack.Unpacker(raw=False); u.feed(s.recv(65536)); next(u)
print("ready", flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE)
    check("a python client registered", child.stdout.readline() == b"ready\n")
    base = cl.call("stats")["monitors"]
    m = ctl.spawn("--json", "monitor", "cli/victim")
    check("monitor --json sets its monitor", monitors_reach(cl, base + 1))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    r = m.finish()
    check("monitor --json wakes up when the client is killed", r.rc == 0
          and json.loads(r.out) == {"name": "cli/victim",
                                    "reason": "disconnected"})

    cl.call("register", "cli/u")
    base = cl.call("stats")["monitors"]
    m = ctl.spawn("monitor", "cli/u")
    monitors_reach(cl, base + 1)
    cl.call("unregister", "cli/u")
    r = m.finish()
    check("monitor prints unregistered", r.rc == 0
          and r.out == "unregistered\n")


def test_recv(ctl, cl):
    rv = ctl.spawn("recv", "cli/inbox", "--count", "2")
    e = wait_registered(cl, "cli/inbox")
    check("recv registers NAME", e is not None and e["pid"] == rv.pid)
    r1 = ctl.run("send", "cli/inbox", "hello there")
    check("recv prints a str as it is, at once",
          rv.readline() == "hello there")
    r2 = ctl.run("send", "--json-payload", "cli/inbox", '{"n": [1, 2]}')
    line = rv.readline()
    check("recv prints other payloads as JSON", r1.rc == 0 and r2.rc == 0
          and line is not None and json.loads(line) == {"n": [1, 2]})
    r = rv.finish()
    check("recv --count 2 exits 0 after two messages", r.rc == 0)
    check("and its name is gone", cl.call("whereis", "cli/inbox") is None)

    rv = ctl.spawn("--json", "recv", "cli/inbox2")
    wait_registered(cl, "cli/inbox2")
    me = cl.call("hello")["conn"]
    cl.call("send", "cli/inbox2", "one")
    cl.call("send", "cli/inbox2", [1, {"two": None}])
    cl.call("send", "cli/inbox2", b"\x00bin")
    lines = [rv.readline() for _ in range(3)]
    try:
        js = [json.loads(x) for x in lines]
    except (TypeError, ValueError):
        js = []
    check("recv --json prints one object per message", js == [
        {"name": "cli/inbox2", "sender": me, "payload": "one"},
        {"name": "cli/inbox2", "sender": me, "payload": [1, {"two": None}]},
        {"name": "cli/inbox2", "sender": me, "payload": "\u0000bin"}])
    r = ctl.run("recv", "cli/inbox2")
    check("recv of a taken name exits 1", r.rc == 1
          and "cli/inbox2 is held by conn" in r.err)
    rv.signal(signal.SIGINT)
    r = rv.finish()
    check("recv exits 0 on SIGINT", r.rc == 0 and r.err == "")

    rv = ctl.spawn("recv", "cli/inbox3")
    wait_registered(cl, "cli/inbox3")
    rv.signal(signal.SIGTERM)
    check("recv exits 0 on SIGTERM", rv.finish().rc == 0)


def test_evict(ctl, cl):
    """evict: the test runs as the daemon's user, an administrator."""
    h = ctl.spawn("hold", "cli/evictee", "--", "sleep", "30")
    wait_registered(cl, "cli/evictee")
    base = cl.call("stats")["monitors"]
    m = ctl.spawn("monitor", "cli/evictee")
    monitors_reach(cl, base + 1)
    r = ctl.run("evict", "cli/evictee")
    check("evict removes a held name (exit 0, no output)", r.rc == 0
          and r.out == "")
    r = m.finish()
    check("its monitor prints evicted", r.rc == 0 and r.out == "evicted\n")
    check("the holder lost the name, not its command",
          cl.call("whereis", "cli/evictee") is None and h.proc.poll() is None)
    r = ctl.run("evict", "cli/evictee")
    check("evict of a missing name: exit 1", r.rc == 1
          and "not registered" in r.err)
    h.signal(signal.SIGTERM)
    h.finish()


def test_daemon_restart(ctl, cl, daemon, path):
    """The daemon goes away: recv and monitor exit 3; hold waits and
    registers its name again on the new daemon."""
    h = ctl.spawn("hold", "cli/phoenix", "--", "sleep", "30")
    rv = ctl.spawn("recv", "cli/orphan")
    wait_registered(cl, "cli/phoenix")
    wait_registered(cl, "cli/orphan")
    base = cl.call("stats")["monitors"]
    m = ctl.spawn("monitor", "cli/phoenix")
    monitors_reach(cl, base + 1)
    cl.close()
    stop_daemon(daemon, "the daemon")
    r = rv.finish()
    check("recv exits 3 when the daemon goes away", r.rc == 3
          and r.err.startswith("procregctl: "))
    r = m.finish()
    check("monitor exits 3 when the daemon goes away", r.rc == 3)
    daemon, ok = start_daemon(path)
    check("a new daemon starts on the same socket", ok)
    cl = Client(path)
    e = wait_registered(cl, "cli/phoenix")
    check("hold registers its name again on the new daemon", e is not None
          and e["pid"] == h.pid)
    h.signal(signal.SIGTERM)
    r = h.finish()
    check("and still exits with CMD's status", r.rc == 143
          and "held again" in r.err)
    cl.close()
    return daemon


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-cli.")
    path = os.path.join(tmp, "s.sock")
    daemon, ok = start_daemon(path)
    ctl = Ctl(path)
    try:
        check("the daemon starts", ok)
        test_usage(ctl)
        test_unreachable(ctl, tmp)
        test_last_words(tmp)
        test_ping_stats(ctl, path)
        a, b = Client(path), Client(path)
        test_whereis_list(ctl, a, b)
        test_send(ctl, a, path)
        a.close()
        b.close()
        cl = Client(path)
        test_hold(ctl, cl, path)
        test_monitor(ctl, cl, path)
        test_recv(ctl, cl)
        test_evict(ctl, cl)
        daemon = test_daemon_restart(ctl, cl, daemon, path)
    finally:
        stop_daemon(daemon, "the last daemon")
        check("the socket file is removed", not os.path.exists(path))
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    print(f"cli: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
