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
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DAEMON = os.environ.get("PROCREGD", os.path.join(ROOT, "procregd"))
CTL = os.environ.get("PROCREGCTL", os.path.join(ROOT, "procregctl"))
COMMANDS = ["whereis", "await", "list", "send", "call", "hold", "serve",
            "recv", "join", "members", "publish", "monitor", "watch", "keys",
            "queue", "nodes", "stats", "ping", "evict", "help"]
STATS_KEYS = ["connections", "names", "monitors", "requests", "messages",
              "downs", "notifications_ignored", "connections_total",
              "uptime_ms", "groups", "members", "calls", "replies_late",
              "awaits", "subscriptions", "seq"]
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

    def send_request(self, method, *params):
        """Send a request without waiting; its msgid."""
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)]))
        return self.msgid

    def response(self, msgid):
        """(error, result) of the response to msgid, queueing pushes."""
        while True:
            msg = self.recv()
            if msg[0] == 2:
                self.pushes.append(msg)
                continue
            kind, got, error, result = msg
            assert (kind, got) == (1, msgid), (kind, got)
            return error, result

    def request(self, method, *params):
        """(error, result) of one request."""
        return self.response(self.send_request(method, *params))

    def call(self, method, *params):
        error, result = self.request(method, *params)
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
        self.errpos = 0
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

    def errline(self, timeout=10.0):
        """One line of stderr (kept for finish too), or None when none
        came in time."""
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.err[self.errpos:]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            data = os.read(fd, 65536)
            if not data:
                return None
            self.err += data
        end = self.err.index(b"\n", self.errpos)
        line = self.err[self.errpos:end]
        self.errpos = end + 1
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


def proc_stat(pid):
    """(state, ppid, pgrp, starttime) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[19])


class Proc:
    """One process, told apart from a later one with its pid by its start
    time."""

    def __init__(self, pid):
        st = proc_stat(pid)
        self.pid = pid
        self.start = st[3] if st else None
        self.pgrp = st[2] if st else None

    def gone(self):
        """Exited (a zombie counts: it runs nothing)."""
        st = proc_stat(self.pid)
        return st is None or st[3] != self.start or st[0] == "Z"

    def __repr__(self):
        return f"Proc({self.pid})"


def group_members(pgrp):
    """Pids of the live processes in process group pgrp."""
    pids = []
    for d in os.listdir("/proc"):
        st = proc_stat(d) if d.isdigit() else None
        if st is not None and st[2] == pgrp and st[0] != "Z":
            pids.append(int(d))
    return pids


def guarded(hold_pid):
    """(guardian, CMD) pids once hold_pid has started CMD, else None."""
    found = []

    def look():
        for g in children(hold_pid):
            kids = children(g)
            if kids:
                found.append((g, kids[0]))
                return True
        return False
    return found[0] if eventually(look) else None


def pids_written(path, timeout=10.0):
    """The Procs of the pids a CMD wrote to path (whitespace-separated,
    moved into place whole), once it is there; [] if it never came."""
    if not eventually(lambda: os.path.exists(path), timeout):
        return []
    with open(path) as f:
        return [Proc(int(x)) for x in f.read().split()]


def rm_f(path):
    """Remove path if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def with_children(procs):
    """procs and, once there, the children of each (a shell's sleep)."""
    kids = []
    eventually(lambda: kids.extend(children(procs[-1].pid)) or kids)
    return procs + [Proc(k) for k in kids]


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
          and r.out == "procregctl 0.1.0 (protocol 3)\n")
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
    check("call without a payload exits 2", ctl.run("call", "x").rc == 2)
    check("call --conn with a name exits 2",
          ctl.run("call", "--conn", "x", "p").rc == 2)
    check("send --conn with 0 exits 2", ctl.run("send", "--conn", "0",
                                                "p").rc == 2)
    check("call -t over a day exits 2",
          ctl.run("call", "-t", "86400001", "x", "p").rc == 2)
    check("serve without a command exits 2", ctl.run("serve", "x").rc == 2)
    check("serve --max-time 0 exits 2",
          ctl.run("serve", "--max-time", "0", "x", "true").rc == 2)
    check("join --json-value without VALUE exits 2",
          ctl.run("join", "--json-value", "g").rc == 2)
    check("join with bad JSON exits 2",
          ctl.run("join", "--json-value", "g", "{nope").rc == 2)
    check("join with two values exits 2", ctl.run("join", "g", "a",
                                                  "b").rc == 2)
    check("members without a group exits 2", ctl.run("members").rc == 2)
    check("publish without a payload exits 2",
          ctl.run("publish", "g").rc == 2)
    check("--no-echo is publish's only", ctl.run("send", "--no-echo", "x",
                                                 "p").rc == 2)
    r = ctl.run("keys", "abc")
    check("keys of no conn id exits 2", r.rc == 2 and "abc" in r.err)


def test_help_suggest(ctl):
    """help [COMMAND], "did you mean", and each command's --help naming
    only its own options."""
    r = ctl.run("help")
    check("help prints the tool's --help", r.rc == 0
          and r.out == ctl.run("--help").out)
    r = ctl.run("help", "serve")
    check("help COMMAND prints COMMAND --help", r.rc == 0
          and r.out == ctl.run("serve", "--help").out)
    check("help is in the list of commands",
          "\n  help [COMMAND] " in ctl.run("--help").out)
    r = ctl.run("help", "lsit")
    check("help of an unknown command exits 2 with a suggestion",
          r.rc == 2 and "did you mean 'list'?" in r.err and r.out == "")
    for typo, meant in (("lsit", "list"), ("wheris", "whereis"),
                        ("stat", "stats"), ("evcit", "evict"),
                        ("hodl", "hold")):
        r = ctl.run(typo)
        check(f"{typo} suggests {meant}", r.rc == 2
              and f"unknown command '{typo}'; did you mean '{meant}'?"
              in r.err)
    r = ctl.run("frobnicate")
    check("no suggestion for what is far from every command",
          r.rc == 2 and "did you mean" not in r.err)
    # Each command's options section names no other command: each option
    # is described as that command uses it.
    for c in COMMANDS:
        out = ctl.run(c, "--help").out
        opts = out.partition("\nOptions:\n")[2]
        others = [o for o in COMMANDS if o != c
                  and re.search(rf"\b{o}\b\s*:", opts)]
        check(f"{c} --help describes only its own options",
              opts != "" and others == [])
    out = ctl.run("serve", "--help").out
    check("serve --help: --count counts calls", "stop after N calls" in out
          and "ping" not in out.partition("\nOptions:\n")[2])
    check("call --help: -t is the callee's time",
          "how long the callee has to reply"
          in ctl.run("call", "--help").out)


def test_json_errors(ctl, tmp):
    """--json: an error is one JSON object on stderr, exit codes as
    without it; a failed connect says what is at the socket's path."""
    def obj(r):
        try:
            j = json.loads(r.err)
        except ValueError:
            return {}
        return j if isinstance(j, dict) and r.err.count("\n") == 1 else {}
    r = ctl.run("--json", "whereis", "cli/json/missing")
    j = obj(r)
    check("--json: not registered is a JSON error, exit 1", r.rc == 1
          and r.out == "" and j.get("error") == "not_found"
          and "cli/json/missing" in j.get("message", ""))
    r = ctl.run("whereis", "--json", "--bogus")
    j = obj(r)
    check("--json: a usage error is a JSON error, exit 2", r.rc == 2
          and j.get("error") == "usage" and "--bogus" in j["message"])
    r = ctl.run("--bogus", "--json")
    check("--json after a bad option still makes it JSON", r.rc == 2
          and obj(r).get("error") == "usage")
    r = ctl.run("--json", "lsit")
    check("--json: an unknown command is a JSON error",
          r.rc == 2 and "did you mean 'list'" in obj(r).get("message", ""))
    r = ctl.run("--json", "send", "cli/json/missing", "x")
    check("--json: send to no one", r.rc == 1
          and obj(r).get("error") == "not_found")
    nowhere = os.path.join(tmp, "nowhere.sock")
    r = Ctl(nowhere).run("--json", "ping")
    j = obj(r)
    check("--json: cannot connect is a JSON error, exit 3", r.rc == 3
          and j.get("error") == "connect" and nowhere in j.get("hint", ""))
    r = Ctl(nowhere).run("ping")
    check("cannot connect: says no daemon listens there and how to point "
          "at one", r.rc == 3 and "No such file or directory" in r.err
          and "does not exist" in r.err and "-s PATH" in r.err
          and "PROCREG_SOCKET" in r.err and "given with -s" in r.err)
    env = dict(os.environ, PROCREG_SOCKET=nowhere)
    r = ctl.run(CTL, "ping", raw=True, env=env)
    check("cannot connect: names $PROCREG_SOCKET when it chose the path",
          r.rc == 3 and "from $PROCREG_SOCKET" in r.err)
    stale = os.path.join(tmp, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    r = Ctl(stale).run("ping")
    check("cannot connect: a socket left by a daemon that is gone",
          r.rc == 3 and "left from one that is gone" in r.err)
    os.unlink(stale)


def test_completion(ctl):
    """The completion scripts ask procregctl for its commands and options
    (__commands, __options), which come from the tables that drive its
    parsing and --help: they cannot drift.  bash's is run; zsh's is
    checked for what it can be without zsh."""
    comp = os.path.join(ROOT, "conf", "completion")
    r = ctl.run("__commands")
    check("__commands prints every command", r.rc == 0
          and sorted(r.out.split()) == sorted(COMMANDS))
    same = True
    for c in COMMANDS + [None]:
        r = ctl.run(*(["__options", c] if c else ["__options"]))
        rows = [x.split() for x in r.out.splitlines()]
        help_out = ctl.run(*([c, "--help"] if c else ["--help"])).out
        section = help_out.partition("\nOptions")[2].partition(
            "\nExit status")[0]
        listed = re.findall(r"^  (?:(-\w), |    )(--[\w-]+)(?: (\S+))?",
                            section, re.M)
        want = [[lng, sh or "-", arg or "-"] for sh, lng, arg in listed]
        same = same and r.rc == 0 and rows == want
    check("__options [COMMAND] lists the options --help describes, with "
          "their short names and arguments", same)
    check("__options of no command exits 2",
          ctl.run("__options", "nope").rc == 2)
    texts = {f: open(os.path.join(comp, f)).read()
             for f in ("procregctl.bash", "_procregctl")}
    fixed = [c for c in COMMANDS if c not in ("hold", "serve", "help")]
    for f, text in texts.items():
        check(f"{f} names no command but hold, serve and help (it asks "
              "procregctl)", "__commands" in text and "__options" in text
              and not [c for c in fixed if re.search(rf"\b{c}\b", text)])
    check("_procregctl is a zsh completion function",
          texts["_procregctl"].startswith("#compdef procregctl\n"))

    def complete(*words):
        script = (f"source {os.path.join(comp, 'procregctl.bash')}\n"
                  "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1))\n"
                  "_procregctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        p = subprocess.run(["bash", "-c", script, "bash", CTL, "-s",
                            ctl.path] + list(words), capture_output=True,
                           timeout=10)
        return p.stdout.decode().split()
    check("bash completes a command", complete("wh") == ["whereis"])
    got = complete("list", "--")
    check("bash completes a command's own options only",
          "--pid" in got and "--uid" in got and "--count" not in got)
    got = complete("serve", "--")
    check("bash: serve's options", "--max-time" in got
          and "--count" in got and "--pid" not in got)
    check("bash: help completes commands", complete("help", "sta")
          == ["stats"])
    check("bash: after -t MS, still the command",
          complete("-t", "5", "pin") == ["ping"])
    check("bash: after hold NAME, a command",
          "sleep" in complete("hold", "-w", "n", "--", "slee"))


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


def fake_daemon(path, protocol, answer, conns=1, node=None):
    """A daemon of conns connections, one after the other, that answers
    hello itself (with node, when given) and every other request with
    answer(sock, request); answer raises EOFError to close."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(10)
    hello = {"server": "procreg", "version": "0.1.0", "protocol": protocol,
             "conn": 1, "boot": "0" * 32, "max_message": 1 << 20}
    if node is not None:
        hello["node"] = node

    def serve_one():
        try:
            c, _ = srv.accept()
        except OSError:
            return False
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
                        c.sendall(msgpack.packb([1, req[1], None, hello]))
                    else:
                        answer(c, req)
        except (OSError, EOFError):
            pass
        c.close()
        return True

    def serve():
        for _ in range(conns):
            if not serve_one():
                return
    t = threading.Thread(target=serve)
    t.start()
    return srv, t


def last_words(c, req):
    """Answer register, send a message push in the same write, close."""
    entry = {"name": req[3][0], "conn": 1, "pid": 1,
             "uid": 0, "gid": 0, "value": None, "since": 1}
    c.sendall(msgpack.packb([1, req[1], None, entry])
              + msgpack.packb([2, "message", [req[3][0], 9, "last words"]]))
    raise EOFError


def test_last_words(tmp):
    """A message that arrives with a reply, just before the daemon closes
    the connection, is still printed."""
    path = os.path.join(tmp, "fake.sock")
    srv, t = fake_daemon(path, 1, last_words)
    r = Ctl(path).run("recv", "--no-reconnect", "x")
    t.join()
    srv.close()
    check("recv prints a message that came just before the close, exit 3",
          r.rc == 3 and r.out == "last words\n")


def pushes_first(pushes):
    """Send pushes in front of the answer (a stats map) to a request."""
    def answer(c, req):
        for p in pushes:
            c.sendall(msgpack.packb(p))
        c.sendall(msgpack.packb([1, req[1], None, {"connections": 1}]))
    return answer


def test_malformed_pushes(tmp):
    """Notifications of a known kind but a shape the library cannot read
    are skipped: the call they arrive during does not fail (no NOMEM)."""
    shapes = [
        ("an event with a payload that is no entry",
         [2, "event", [1, 5, "registered", "notamap"]]),
        ("an event entry without a value",
         [2, "event", [1, 8, "registered", {"name": "x", "conn": 1}]]),
        ("a short unregistered event",
         [2, "event", [1, 7, "unregistered", ["x"]]]),
        ("an acquired without an entry", [2, "acquired", ["x", 42]]),
        ("a call with a bad target", [2, "call", [1, [1, 2], 3, "p"]]),
    ]
    for i, (what, push) in enumerate(shapes):
        path = os.path.join(tmp, f"malformed{i}.sock")
        srv, t = fake_daemon(path, 2, pushes_first([push]))
        r = Ctl(path).run("stats")
        t.join()
        srv.close()
        os.unlink(path)
        check(f"stats ignores {what}", r.rc == 0
              and "memory" not in r.err)


def test_cluster_without_etcd(ctl, cl):
    """Protocol 3's cluster options against a daemon without --etcd: a
    clear unavailable (exit 4), usage errors for what cannot be, and the
    local scope as before."""
    cl.call("register", "cli/cl/local", "v")
    r = ctl.run("hold", "--cluster", "cli/cl/x", "--", "true")
    check("hold --cluster without etcd exits 4 and says the cluster is "
          "unavailable, with a hint", r.rc == 4
          and "cli/cl/x: cluster unavailable: " in r.err
          and "--etcd" in r.err and "procregctl stats" in r.err)
    r = ctl.run("--json", "hold", "--cluster", "cli/cl/x", "--", "true")
    try:
        j = json.loads(r.err)
    except ValueError:
        j = {}
    check("hold --cluster --json: the error code unavailable", r.rc == 4
          and j.get("error") == "unavailable" and "hint" in j)
    check("the name was not registered",
          cl.call("whereis", "cli/cl/x") is None)
    r = ctl.run("recv", "--cluster", "--no-reconnect", "cli/cl/x")
    check("recv --cluster: exit 4, unavailable", r.rc == 4
          and "cluster unavailable" in r.err)
    r = ctl.run("serve", "--cluster", "cli/cl/x", "--", "cat")
    check("serve --cluster: exit 4, unavailable", r.rc == 4
          and "cluster unavailable" in r.err)
    r = ctl.run("hold", "--wait", "--cluster", "cli/cl/x", "--", "true")
    check("hold --wait --cluster without etcd: exit 4, unavailable",
          r.rc == 4 and "cluster unavailable" in r.err)
    r = ctl.run("hold", "--allow-replacement", "--cluster", "cli/cl/x",
                "--", "true")
    check("hold --allow-replacement --cluster: the daemon's bad_request, "
          "exit 4", r.rc == 4 and "bad request" in r.err)
    for args in (["nodes"], ["whereis", "--cluster", "cli/cl/local"],
                 ["whereis", "--consistent", "cli/cl/nothing"],
                 ["list", "--cluster"], ["list", "--all"],
                 ["watch", "--cluster", "--no-reconnect"]):
        r = ctl.run(*args)
        check(f"{' '.join(args)} without etcd: exit 4, unavailable",
              r.rc == 4 and "cluster unavailable" in r.err
              and r.out == "")
    r = ctl.run("--json", "nodes")
    check("nodes --json without etcd: {\"error\": \"unavailable\"}",
          r.rc == 4 and json.loads(r.err or "{}").get("error")
          == "unavailable")
    plain = ctl.run("whereis", "cli/cl/local")
    local = ctl.run("whereis", "--local", "cli/cl/local")
    check("whereis --local is whereis for a local name", plain.rc == 0
          and local.rc == 0 and fields(local.out)["name"] == "cli/cl/local"
          and "scope" not in fields(local.out)
          and local.out.split("since:")[0] == plain.out.split("since:")[0])
    r = ctl.run("--json", "whereis", "--local", "cli/cl/local")
    check("whereis --local --json: no cluster keys", r.rc == 0
          and "scope" not in json.loads(r.out)
          and "node" not in json.loads(r.out))
    r = ctl.run("whereis", "--local", "cli/cl/nothing")
    check("whereis --local of an absent name: exit 1, not on this daemon",
          r.rc == 1 and "not registered on this daemon" in r.err)
    check("whereis --local --cluster: exit 2",
          ctl.run("whereis", "--local", "--cluster", "x").rc == 2)
    check("list --all --cluster: exit 2",
          ctl.run("list", "--all", "--cluster").rc == 2)
    check("--cluster is not queue's, --consistent and --local not hold's",
          ctl.run("queue", "--cluster", "x").rc == 2
          and ctl.run("hold", "--consistent", "x", "true").rc == 2
          and ctl.run("hold", "--local", "x", "true").rc == 2)
    r = ctl.run("stats")
    check("stats without etcd: no cluster lines", r.rc == 0
          and "cluster." not in r.out)
    r = ctl.run("--json", "stats")
    check("stats --json without etcd: no cluster object", r.rc == 0
          and "cluster" not in json.loads(r.out))
    cl.call("unregister", "cli/cl/local")


def cluster_answers(c, req):
    """A protocol-3 daemon's answers on node n1, for the fake daemon."""
    method, params = req[2], req[3]

    def entry(name, node=None, stale=False, conn=3):
        e = {"name": name, "conn": conn, "pid": 4242, "uid": 1000,
             "gid": 1000, "value": {"port": 1}, "since": 1795000001234,
             "gen": 7}
        if node is not None:
            e.update(scope="cluster", node=node)
        if stale:
            e["stale"] = True
        return e
    err, res = None, True
    if method == "whereis":
        if params[0] == "c":
            res = entry("c", "n2", stale=len(params) == 1)
        elif params[0] == "l":
            res = entry("l")
        else:
            res = None
    elif method == "list":
        after = params[2] if len(params) > 2 else None
        scope = params[3]["scope"] if len(params) > 3 else "local"
        res = [] if after is not None else {
            "local": [entry("a")],
            "cluster": [entry("a", "n2", conn=9), entry("b", "n1")],
            "all": [entry("a"), entry("a", "n2", conn=9),
                    entry("b", "n1")]}[scope]
    elif method == "nodes":
        res = [{"name": "n1", "since": 1795000000000, "address": "",
                "self": True},
               {"name": "n2", "since": 1795000000001,
                "address": "10.0.0.2:7000", "self": False}]
    elif method == "stats":
        res = dict({k: 1 for k in STATS_KEYS}, cluster={
            "node": "n1", "state": "up", "etcd": "http://127.0.0.1:2379",
            "lease_ttl": 10, "names": 2, "nodes": 2, "revision": 42})
    elif method == "register":
        err = ["taken", "the name is registered in the cluster by node n2 "
               "conn 9"]
    elif method == "queue":
        res = [{"node": "n2", "conn": 4}, {"node": "n1", "conn": 1}] \
            if params[0] == "line" else [3, 5]
    elif method == "subscribe":
        res = {"sub": (1 << 32) + 1, "seq": 700,
               "entries": [entry("b", "n1")]}
        c.sendall(msgpack.packb([1, req[1], None, res])
                  + msgpack.packb([2, "event", [(1 << 32) + 1, 701,
                                                 "registered",
                                                 entry("d", "n2")]])
                  + msgpack.packb([2, "event", [(1 << 32) + 1, 702,
                                                 "unregistered",
                                                 ["d", "nodedown"]]]))
        raise EOFError
    c.sendall(msgpack.packb([1, req[1], err, None if err else res]))


def test_cluster_fake(tmp):
    """What procregctl shows of a cluster node's answers (a fake daemon
    of protocol 3): a cluster entry's scope, node and stale, list's NODE
    column, the nodes table, stats' cluster lines, a taken cluster name's
    holder on another node."""
    def run(*args, conns=1):
        path = os.path.join(tmp, "cluster.sock")
        srv, t = fake_daemon(path, 3, cluster_answers, conns=conns,
                             node="n1")
        r = Ctl(path).run(*args)
        t.join()
        srv.close()
        os.unlink(path)
        return r
    r = run("whereis", "c")
    f = fields(r.out)
    check("whereis of a cluster name: scope, node and stale after gen",
          r.rc == 0 and list(f)[-4:] == ["gen", "scope", "node", "stale"]
          and f["scope"] == "cluster" and f["node"] == "n2"
          and f["stale"].startswith("yes") and f["conn"] == "3")
    r = run("whereis", "--consistent", "--cluster", "c")
    check("whereis --consistent --cluster: not stale", r.rc == 0
          and fields(r.out).get("node") == "n2"
          and "stale" not in fields(r.out))
    r = run("--json", "whereis", "c")
    j = json.loads(r.out) if r.rc == 0 else {}
    check("whereis --json of a cluster name: scope, node, stale keys last",
          list(j)[-3:] == ["scope", "node", "stale"]
          and j["scope"] == "cluster" and j["node"] == "n2"
          and j["stale"] is True and j["value"] == {"port": 1})
    r = run("--json", "whereis", "l")
    j = json.loads(r.out) if r.rc == 0 else {}
    check("whereis --json of a local name: no cluster keys", r.rc == 0
          and list(j)[-1] == "gen" and "scope" not in j)
    r = run("list", "--all")
    rows = [x.split() for x in r.out.splitlines()]
    check("list --all: a NODE column, - for a local name, both scopes of a "
          "name", r.rc == 0 and rows[0] == ["NAME", "NODE", "CONN", "PID",
                                            "UID", "VALUE", "AGE"]
          and [x[:3] for x in rows[1:]] == [["a", "-", "3"],
                                            ["a", "n2", "9"],
                                            ["b", "n1", "3"]])
    r = run("list", "--cluster")
    rows = [x.split() for x in r.out.splitlines()]
    check("list --cluster: the cluster's names", r.rc == 0
          and [x[:2] for x in rows] == [["NAME", "NODE"], ["a", "n2"],
                                        ["b", "n1"]])
    r = run("list")
    rows = [x.split() for x in r.out.splitlines()]
    check("list: the local names, no NODE column", r.rc == 0
          and rows[0][:2] == ["NAME", "CONN"] and len(rows) == 2)
    r = run("--json", "list", "--all")
    j = json.loads(r.out) if r.rc == 0 else []
    check("list --all --json: scope and node on the cluster entries",
          [(e["name"], e.get("scope"), e.get("node")) for e in j]
          == [("a", None, None), ("a", "cluster", "n2"),
              ("b", "cluster", "n1")])
    r = run("nodes")
    rows = [x.split() for x in r.out.splitlines()]
    check("nodes: a table in the daemon's order", r.rc == 0
          and rows[0] == ["NAME", "ADDRESS", "AGE", "SELF"]
          and [(x[0], x[1], x[3]) for x in rows[1:]]
          == [("n1", "-", "yes"), ("n2", "10.0.0.2:7000", "no")])
    r = run("--json", "nodes")
    j = json.loads(r.out) if r.rc == 0 else []
    check("nodes --json", j == [
        {"name": "n1", "address": "", "since": 1795000000000, "self": True},
        {"name": "n2", "address": "10.0.0.2:7000", "since": 1795000000001,
         "self": False}])
    r = run("stats")
    lines = dict(x.split(None, 1) for x in r.out.splitlines())
    check("stats: the cluster's lines last", r.rc == 0
          and list(lines)[-7:] == ["cluster.node", "cluster.state",
                                   "cluster.etcd", "cluster.lease_ttl",
                                   "cluster.names", "cluster.nodes",
                                   "cluster.revision"]
          and lines["cluster.state"] == "up"
          and lines["cluster.revision"] == "42")
    r = run("--json", "stats")
    j = json.loads(r.out) if r.rc == 0 else {}
    check("stats --json: the cluster object", j.get("cluster") == {
        "node": "n1", "state": "up", "etcd": "http://127.0.0.1:2379",
        "lease_ttl": 10, "names": 2, "nodes": 2, "revision": 42})
    r = run("hold", "--cluster", "c", "--", "true")
    check("hold --cluster of a name held on another node: exit 1, its "
          "holder and node", r.rc == 1
          and "c is held by conn 3 (pid 4242) on node n2" in r.err)
    r = run("queue", "line")
    check("queue of a cluster name: CONN NODE lines", r.rc == 0
          and r.out == "4 n2\n1 n1\n")
    r = run("--json", "queue", "line")
    check("queue --json of a cluster name: node and conn objects",
          r.rc == 0 and json.loads(r.out) == [{"node": "n2", "conn": 4},
                                              {"node": "n1", "conn": 1}])
    r = run("queue", "lq")
    check("queue of a local name: conn ids as before", r.rc == 0
          and r.out == "3\n5\n")
    r = run("watch", "--cluster", "--no-reconnect", "")
    lines = r.out.splitlines()
    check("watch --cluster: the snapshot and the changes, node=NODE on the "
          "entries", len(lines) == 3
          and lines[0].startswith("700 entry b conn=3 ")
          and lines[0].endswith(" node=n1")
          and lines[1].startswith("701 registered d ")
          and lines[1].endswith(" node=n2")
          and lines[2] == "702 unregistered d reason=nodedown")
    r = run("--json", "watch", "--cluster", "--no-reconnect")
    js = [json.loads(x) for x in r.out.splitlines()]
    check("watch --cluster --json: the cluster entries' node",
          [(j["seq"], j["kind"]) for j in js] == [
              (700, "entry"), (701, "registered"), (702, "unregistered")]
          and js[0]["payload"]["node"] == "n1"
          and js[2]["payload"] == ["d", "nodedown"])


def test_ping_stats(ctl, path):
    r = ctl.run("ping")
    check("ping prints a pong", r.rc == 0 and re.fullmatch(
        r"pong from procreg 0\.1\.0 \(protocol 3, conn \d+\): "
        r"\d+\.\d{3} ms\n", r.out) is not None)
    r = ctl.run("--json", "ping")
    try:
        j = json.loads(r.out)
    except ValueError:
        j = {}
    check("ping --json", r.rc == 0 and j.get("version") == "0.1.0"
          and j.get("protocol") == 3 and isinstance(j.get("conn"), int)
          and isinstance(j.get("rtt_ms"), (int, float)))
    r = ctl.run("ping", "-c", "3", "-i", "0")
    # Issue 17 added the summary line: three pongs, then min/avg/max.
    lines = r.out.splitlines()
    check("ping -c 3 pings three times", r.rc == 0 and len(lines) == 4
          and all(x.startswith("pong") for x in lines[:3]))
    m = re.fullmatch(r"3 pings: min/avg/max (\d+\.\d{3})/(\d+\.\d{3})/"
                     r"(\d+\.\d{3}) ms", lines[3] if len(lines) == 4 else "")
    rtts = [float(x.rsplit(" ", 2)[1]) for x in lines[:3]]
    check("ping -c 3 ends with a min/avg/max summary of its pings",
          m is not None and float(m[1]) == min(rtts)
          and float(m[3]) == max(rtts)
          and abs(float(m[2]) - sum(rtts) / 3) < 0.0015)
    r = ctl.run("--json", "ping", "-c", "2", "-i", "0")
    js = [json.loads(x) for x in r.out.splitlines()] if r.rc == 0 else []
    check("ping --json -c 2: two pongs and a summary object",
          len(js) == 3 and js[2].get("count") == 2
          and js[2].get("min_ms") == min(j["rtt_ms"] for j in js[:2])
          and js[2].get("max_ms") == max(j["rtt_ms"] for j in js[:2]))
    r = ctl.run("ping")
    check("a single ping has no summary", len(r.out.splitlines()) == 1)
    env = dict(os.environ, PROCREG_SOCKET=path)
    r = ctl.run(CTL, "ping", raw=True, env=env)
    check("the default socket honours $PROCREG_SOCKET", r.rc == 0
          and r.out.startswith("pong"))

    r = ctl.run("stats")
    lines = r.out.splitlines()
    parsed = [line.split() for line in lines]
    # Issue 17 appended the daemon's pid, socket, version, protocol and
    # memory: the counters are the first sixteen lines.
    check("stats prints the sixteen counters in order", r.rc == 0
          and [p[0] for p in parsed[:16]] == STATS_KEYS
          and all(p[1].isdigit() for p in parsed[:16]))
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(path)
    dpid = struct.unpack("3i", peer.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
    peer.close()
    rest = {p[0]: p[1] for p in parsed[16:]}
    check("stats then shows the daemon's pid, socket, version, protocol "
          "and memory", list(rest) == ["pid", "socket", "version",
                                       "protocol", "memory_rss_kb"]
          and rest["pid"] == str(dpid) and rest["socket"] == path
          and rest["version"] == "0.1.0" and rest["protocol"] == "3"
          and int(rest["memory_rss_kb"]) > 0)
    check("stats aligns its values", len({line.index(p[1], len(p[0]))
                                          for line, p in zip(lines, parsed)})
          == 1)
    r = ctl.run("stats", "--json")
    try:
        j = json.loads(r.out)
    except ValueError:
        j = {}
    check("stats --json is an object of the sixteen counters", r.rc == 0
          and list(j)[:16] == STATS_KEYS
          and all(isinstance(j[k], int) for k in STATS_KEYS)
          and j["connections"] >= 1)
    check("stats --json: then pid, socket, version, protocol, memory",
          list(j)[16:] == ["pid", "socket", "version", "protocol",
                           "memory_rss_kb"] and j["pid"] == dpid
          and j["socket"] == path and j["version"] == "0.1.0"
          and j["protocol"] == 3 and j["memory_rss_kb"] > 0)
    env = dict(os.environ, PROCREG_SOCKET=path)
    r = ctl.run(CTL, "stats", raw=True, env=env)
    check("stats shows the socket $PROCREG_SOCKET named", r.rc == 0
          and f"socket                 {path}\n" in r.out)


def test_whereis_list(ctl, a, b):
    a_conn = a.call("hello", "cli-test-a")["conn"]
    entry = a.call("register", "cli/db", {"port": 5432})
    r = ctl.run("whereis", "cli/db")
    f = fields(r.out)
    check("whereis finds a name", r.rc == 0 and r.err == "")
    check("whereis prints every field", list(f) == [
        "name", "conn", "pid", "uid", "gid", "value", "since", "gen"]
        and f["gen"] == str(entry["gen"])
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
        "since": entry["since"], "gen": entry["gen"]})
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
    # --pid and --uid: the names of one process, or one user.
    hold = ctl.spawn("hold", "cli/list/held", "--", "sleep", "60")
    wait_registered(a, "cli/list/held")
    r = ctl.run("--json", "list", "cli/list/", "--pid", str(hold.pid))
    check("list --pid: only that process's names", r.rc == 0
          and [e["name"] for e in json.loads(r.out)] == ["cli/list/held"])
    r = ctl.run("list", "--pid", str(os.getpid()), "cli/list/")
    check("list --pid in the table", r.rc == 0
          and [x.split()[0] for x in r.out.splitlines()] == [
              "NAME", "cli/list/a", "cli/list/b", "cli/list/long-name-here"])
    r = ctl.run("--json", "list", "cli/list/", "--uid", str(os.getuid()))
    check("list --uid: our names", r.rc == 0 and len(json.loads(r.out)) == 4)
    r = ctl.run("--json", "list", "--uid", str(os.getuid() + 1),
                "--pid", str(os.getpid()))
    check("list --uid of another user: none of ours", r.rc == 0
          and json.loads(r.out) == [])
    check("list --pid 0 is a usage error",
          ctl.run("list", "--pid", "0").rc == 2)
    check("list --uid of no number is a usage error",
          ctl.run("list", "--uid", "root").rc == 2)
    hold.signal(signal.SIGTERM)
    check("the hold for --pid ends", hold.finish().rc is not None)


def tty_run(argv, cols, env=None):
    """Run argv with standard output on a terminal of cols columns; what
    it wrote (CR LF as LF) and its exit status."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            import fcntl
            import termios
            fcntl.ioctl(1, termios.TIOCSWINSZ,
                        struct.pack("HHHH", 24, cols, 0, 0))
            os.execve(argv[0], argv, env or os.environ)
        finally:
            os._exit(127)
    out = b""
    while True:
        if not select.select([fd], [], [], 10)[0]:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    _, st = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace").replace("\r\n", "\n"), st


def display_width(s):
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in s)


def test_list_terminal(ctl, a):
    """list on a terminal: display widths, lines cut to the terminal's
    width, bin values as their size; through a pipe, as it always was."""
    a.call("register", "cli/tty/名前", "wide")
    a.call("register", "cli/tty/bin", b"\x00\x01" * 6)
    a.call("register", "cli/tty/long", "v" * 200)
    env = dict(os.environ, LC_ALL="C.UTF-8")
    out, st = tty_run(ctl.argv(["list", "cli/tty/"]), 72, env)
    lines = out.splitlines()
    check("list on a terminal exits 0", os.WIFEXITED(st)
          and os.WEXITSTATUS(st) == 0 and len(lines) == 4)
    check("list on a terminal: no line is wider than the terminal",
          all(display_width(x) <= 72 for x in lines))
    long = [x for x in lines if x.startswith("cli/tty/long")]
    check("list on a terminal: a wider line is cut, marked with …",
          len(long) == 1 and display_width(long[0]) == 72
          and long[0].endswith("…"))
    binrow = [x for x in lines if x.startswith("cli/tty/bin")]
    check("list on a terminal: a bin value shows as <bin 12 bytes>",
          len(binrow) == 1 and "<bin 12 bytes>" in binrow[0])
    # CONN starts at the same display column on every line.
    cols = set()
    for x in lines:
        name = x.split()[0]
        rest = x[len(name):]
        cols.add(display_width(name) + len(rest) - len(rest.lstrip()))
    check("list on a terminal aligns by display width (a CJK name is "
          "two columns a character)", len(cols) == 1)
    r = ctl.run("list", "cli/tty/", env=env)
    check("list through a pipe: neither cut nor <bin>", r.rc == 0
          and "v" * 200 in r.out and "<bin" not in r.out
          and "…" not in r.out)
    out, st = tty_run(ctl.argv(["--json", "list", "cli/tty/"]), 40, env)
    try:
        j = json.loads(out)
    except ValueError:
        j = []
    check("list --json on a terminal is JSON as it is", len(j) == 3)
    for n in ("cli/tty/名前", "cli/tty/bin", "cli/tty/long"):
        a.call("unregister", n)


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

    gc = guarded(h.pid)
    check("hold runs CMD under one guardian, in a process group of its own "
          "(the guardian's), the guardian in procregctl's",
          gc is not None and len(children(h.pid)) == 1
          and proc_stat(gc[1])[2] == gc[0]
          and proc_stat(gc[0])[2] == os.getpgrp())
    if gc:
        os.kill(gc[1], signal.SIGKILL)
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
    gc = guarded(h.pid)
    cmd = Proc(gc[1]) if gc else None
    ref = cl.call("monitor", "cli/life")
    h.signal(signal.SIGKILL)
    r = h.finish()
    check("hold killed by SIGKILL", e is not None and r.rc == -9)
    check("its lifeline fires the monitor: disconnected",
          cl.push() == [2, "down", [ref, "cli/life", "disconnected"]])
    check("the name is released", cl.call("whereis", "cli/life") is None)
    check("CMD does not outlive procregctl (its guardian stops it)",
          cmd is not None and eventually(cmd.gone))


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
    check("and its name is gone",
          eventually(lambda: cl.call("whereis", "cli/inbox") is None))

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


def test_stdin_payloads(ctl, cl):
    """PAYLOAD - reads the payload from standard input (send, call,
    publish; JSON with --json-payload), and recv prints one message a
    line whatever it holds."""
    rv = ctl.spawn("recv", "cli/stdin", "--count", "5")
    wait_registered(cl, "cli/stdin")

    def piped(*args, data):
        p = subprocess.run(ctl.argv(args), input=data, capture_output=True,
                           timeout=10)
        return p.returncode, p.stderr.decode(errors="replace")
    rc, _ = piped("send", "cli/stdin", "-", data=b"two\nlines\n")
    check("send - sends standard input as a str, final newline too",
          rc == 0 and rv.readline() == "two\\nlines\\n")
    rc, _ = piped("send", "--json-payload", "cli/stdin", "-",
                  data=b'{"k": [1,\n 2]}\n')
    line = rv.readline()
    check("send --json-payload - reads JSON from standard input",
          rc == 0 and line is not None and json.loads(line) == {"k": [1, 2]})
    rc, err = piped("send", "--json-payload", "cli/stdin", "-", data=b"{no")
    check("send --json-payload - of bad JSON exits 2", rc == 2
          and "standard input" in err)
    rc, _ = piped("send", "cli/stdin", "-", data=b"back\\slash\r\x01\ttab")
    check("recv escapes backslash, CR and controls, keeps tab",
          rc == 0 and rv.readline() == "back\\\\slash\\r\\x01\ttab")
    rc, _ = piped("send", "cli/stdin", "-", data=b"")
    check("send - of nothing sends an empty str", rc == 0
          and rv.readline() == "")
    rc, _ = piped("send", "--json-payload", "cli/stdin", "-",
                  data=b'"a\\nb"')
    check("recv prints a str sent as JSON on one line too", rc == 0
          and rv.readline() == "a\\nb")
    check("recv --count 5 ends", rv.finish().rc == 0)

    rv = ctl.spawn("--json", "recv", "cli/stdin-json", "--count", "1")
    wait_registered(cl, "cli/stdin-json")
    cl.call("send", "cli/stdin-json", "x\ny")
    line = rv.readline()
    check("recv --json: a payload with newlines is one line",
          line is not None and json.loads(line)["payload"] == "x\ny")
    rv.finish()

    callee = Callee(ctl.path, "cli/stdin-echo")
    try:
        p = subprocess.run(ctl.argv(["call", "cli/stdin-echo", "-"]),
                           input=b"from stdin", capture_output=True,
                           timeout=10)
        check("call - calls with standard input", p.returncode == 0
              and p.stdout == b"from stdin\n")
    finally:
        callee.close()
    jn = ctl.spawn("join", "cli/stdin-group", "--count", "1")
    members_reach(cl, "cli/stdin-group", 1)
    p = subprocess.run(ctl.argv(["publish", "cli/stdin-group", "-"]),
                       input=b"to\nall", capture_output=True, timeout=10)
    check("publish - publishes standard input, join prints it on one line",
          p.returncode == 0 and jn.readline() == "to\\nall")
    check("join --count 1 ends", jn.finish().rc == 0)


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
    r = h.finish()
    check("the evicted hold is told: it stops its command and exits 5",
          r.rc == 5 and r.err == "procregctl: lost cli/evictee (evicted): "
          "stopping CMD\n")
    check("and does not take the name back",
          cl.call("whereis", "cli/evictee") is None)
    r = ctl.run("evict", "cli/evictee")
    check("evict of a missing name: exit 1", r.rc == 1
          and "not registered" in r.err)


class Callee:
    """A plain client that holds name and answers calls on a thread, by
    the payload: "fail" an error, "park" no reply, "die" closes the
    connection, "nl" a str ending with a newline; anything else comes
    back as it went."""

    def __init__(self, path, name):
        self.cl = Client(path)
        self.conn = self.cl.call("hello")["conn"]
        self.cl.call("register", name)
        self.cl.sock.settimeout(None)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            while True:
                msg = self.cl.recv()
                if msg[:2] != [2, "call"]:
                    continue
                call_id, _target, _caller, payload = msg[2]
                if payload == "park":
                    continue
                if payload == "die":
                    self.cl.sock.shutdown(socket.SHUT_RDWR)
                    return
                if payload == "fail":
                    req = [call_id, None, ["no_such_key",
                                           "size is not set"]]
                elif isinstance(payload, str) and \
                        payload.startswith("fail:"):
                    req = [call_id, None, [payload[5:], "callee says no"]]
                else:
                    req = [call_id, "line\n" if payload == "nl"
                           else payload]
                self.cl.msgid += 1
                self.cl.sock.sendall(msgpack.packb(
                    [0, self.cl.msgid, "reply", req]))
        except (OSError, EOFError, ValueError):
            return

    def close(self):
        try:
            self.cl.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(10)
        self.cl.close()


def test_call(ctl, path):
    callee = Callee(path, "cli/kv")
    r = ctl.run("call", "cli/kv", "hello")
    check("call prints a str reply and a newline", r.rc == 0
          and r.out == "hello\n" and r.err == "")
    r = ctl.run("call", "cli/kv", "nl")
    check("call adds no newline to a str that ends with one", r.rc == 0
          and r.out == "line\n")
    r = ctl.run("call", "--json-payload", "cli/kv", '{"a": [1, 2.5]}')
    check("call --json-payload; other replies print as JSON", r.rc == 0
          and json.loads(r.out) == {"a": [1, 2.5]}
          and len(r.out.splitlines()) == 1)
    r = ctl.run("--json", "call", "cli/kv", "hello")
    check("call --json prints the reply as one JSON document", r.rc == 0
          and r.out == '"hello"\n')
    r = ctl.run("call", "cli/kv", "fail")
    check("a callee's error exits 1 with CODE: MESSAGE", r.rc == 1
          and r.out == ""
          and r.err == "procregctl: cli/kv: no_such_key: size is not set\n")
    # A callee's error with one of the protocol's own codes: CODE: MESSAGE.
    r = ctl.run("call", "cli/kv", "fail:taken")
    check("a callee's error with code taken exits 1 with CODE: MESSAGE",
          r.rc == 1 and r.err == "procregctl: cli/kv: taken: callee says no\n")
    r = ctl.run("call", "cli/kv", "fail:stale")
    check("a callee's error with code stale exits 1 with CODE: MESSAGE",
          r.rc == 1 and r.err == "procregctl: cli/kv: stale: callee says no\n")
    r = ctl.run("call", "cli/kv", "fail:limit")
    check("a callee's limit (the daemon's code too): CODE: MESSAGE, exit 4",
          r.rc == 4 and r.err == "procregctl: cli/kv: limit: callee says no\n")
    r = ctl.run("-t", "200", "call", "cli/kv", "park")
    check("no reply within -t: timeout, exit 4", r.rc == 4
          and "timeout" in r.err)
    rs = [ctl.run("-t", "1", "call", "cli/kv", "park") for _ in range(5)]
    check("call -t 1: the daemon's timeout, not a local one", all(
        x.rc == 4 and x.err.startswith("procregctl: cli/kv: timeout:")
        for x in rs))
    r = ctl.run("call", "cli/missing", "x")
    check("call of a missing name exits 1", r.rc == 1
          and r.err == "procregctl: cli/missing: not registered\n")
    r = ctl.run("call", "--conn", str(callee.conn), "by conn")
    check("call --conn calls a connection", r.rc == 0
          and r.out == "by conn\n")
    r = ctl.run("call", "--conn", "999999", "x")
    check("call --conn of no connection exits 1", r.rc == 1
          and r.err == "procregctl: conn 999999: no such connection\n")
    r = ctl.run("call", "cli/kv", "die")
    check("a callee that goes away: down, exit 1", r.rc == 1
          and "down" in r.err)
    callee.close()


def test_send_monitor_conn(ctl, cl, path):
    other = Client(path)
    conn = other.call("hello")["conn"]
    r = ctl.run("send", "--conn", str(conn), "to the conn")
    m = other.push()
    check("send --conn sends to a connection", r.rc == 0 and m == [
        2, "message", [conn, m[2][1], "to the conn"]])
    r = ctl.run("send", "--conn", "999999", "x")
    check("send --conn of no connection exits 1", r.rc == 1
          and "conn 999999: no such connection" in r.err)
    base = cl.call("stats")["monitors"]
    m1 = ctl.spawn("monitor", "--conn", str(conn))
    m2 = ctl.spawn("--json", "monitor", "--conn", str(conn))
    check("monitor --conn sets its monitors", monitors_reach(cl, base + 2))
    other.close()
    r1, r2 = m1.finish(), m2.finish()
    check("monitor --conn wakes up when the connection goes: disconnected",
          r1.rc == 0 and r1.out == "disconnected\n")
    check("monitor --conn --json", r2.rc == 0 and json.loads(r2.out) == {
        "conn": conn, "reason": "disconnected"})
    r = ctl.run("monitor", "--conn", str(conn))
    check("monitor --conn of a closed connection: noproc, exit 1",
          r.rc == 1 and r.out == "noproc\n")


def test_serve(ctl, cl, path, tmp):
    s = ctl.spawn("serve", "cli/upper", "--", "tr", "a-z", "A-Z")
    e = wait_registered(cl, "cli/upper")
    check("serve registers NAME", e is not None and e["pid"] == s.pid)
    check("serve answers with CMD's stdout, the payload on its stdin",
          cl.request("call", "cli/upper", "hello") == (None, "HELLO"))
    check("a payload that is no str goes to CMD as JSON and a newline",
          cl.request("call", "cli/upper", {"k": [1, None]}) == (
              None, '{"K":[1,NULL]}\n'))
    r = ctl.run("call", "cli/upper", "from procregctl")
    check("procregctl call against procregctl serve", r.rc == 0
          and r.out == "FROM PROCREGCTL\n")
    r = ctl.run("serve", "cli/upper", "--", "cat")
    check("serve of a taken name exits 1", r.rc == 1
          and "cli/upper is held by conn" in r.err)

    # One call at a time, but the connection is read meanwhile: while CMD
    # waits for a flag file, 200 x 8 kB messages to NAME never find it
    # busy, and calls queue.
    flag = os.path.join(tmp, "flag")
    w = ctl.spawn("serve", "cli/wait", "--", "sh", "-c",
                  f'while [ ! -e {flag} ]; do sleep 0.01; done; cat')
    wait_registered(cl, "cli/wait")
    caller = Client(path)
    first = caller.send_request("call", "cli/wait", "first", 20000)
    second = caller.send_request("call", "cli/wait", "second", 20000)
    sent = 0
    deadline = time.monotonic() + 20
    while sent < 200 and time.monotonic() < deadline:
        try:
            cl.call("send", "cli/wait", "m" * 8000)
            sent += 1
        except RuntimeError as err:
            if str(err) != "busy":
                break
            time.sleep(0.01)
    check("serve drains its connection while CMD runs (200 x 8 kB, 3 x "
          "max-outbuf)", sent == 200)
    check("the calls wait their turn", cl.call("stats")["calls"] == 2)
    open(flag, "w").close()
    check("then each is answered, in order",
          caller.response(first) == (None, "first")
          and caller.response(second) == (None, "second"))
    # SIGTERM while CMD runs: its caller gets down, serve exits 0.
    os.unlink(flag)
    third = caller.send_request("call", "cli/wait", "third", 20000)
    eventually(lambda: children(w.pid))
    w.signal(signal.SIGTERM)
    err, _ = caller.response(third)
    check("SIGTERM while CMD runs: the caller gets down",
          err is not None and err[0] == "down")
    r = w.finish()
    check("and serve exits 0", r.rc == 0)
    caller.close()

    f = ctl.spawn("serve", "cli/fail", "--", "sh", "-c",
                  "cat >/dev/null; echo oops >&2; exit 3")
    wait_registered(cl, "cli/fail")
    check("a failing CMD answers failed with its stderr and status",
          cl.request("call", "cli/fail", "x") == (
              ["failed", "exit status 3: oops"], None))
    r = ctl.run("call", "cli/fail", "x")
    check("which procregctl call reports, exit 1", r.rc == 1
          and r.err == "procregctl: cli/fail: failed: exit status 3: oops\n")
    f.signal(signal.SIGINT)
    check("serve exits 0 on SIGINT", f.finish().rc == 0)
    check("and its name is gone",
          eventually(lambda: cl.call("whereis", "cli/fail") is None))

    n = ctl.spawn("serve", "--count", "2", "cli/env", "--", "sh", "-c",
                  'printf %s "$PROCREG_CALLER"')
    wait_registered(cl, "cli/env")
    me = cl.call("hello")["conn"]
    check("CMD gets PROCREG_CALLER", cl.request("call", "cli/env", "") == (
        None, str(me)))
    cl.request("call", "cli/env", "")
    check("serve --count 2 exits 0 after two calls", n.finish().rc == 0)

    k = ctl.spawn("serve", "--max-time", "200", "cli/sleepy", "--",
                  "sleep", "30")
    wait_registered(cl, "cli/sleepy")
    check("--max-time kills a slow CMD and answers failed",
          cl.request("call", "cli/sleepy", "x", 20000) == (
              ["failed", "killed after 200 ms (--max-time)"], None))
    k.signal(signal.SIGTERM)
    k.finish()
    x = ctl.spawn("serve", "cli/nx", "--", "/nonexistent/cmd")
    wait_registered(cl, "cli/nx")
    err, _ = cl.request("call", "cli/nx", "x")
    check("a CMD that cannot run answers failed, status 127",
          err is not None and err[0] == "failed"
          and err[1].startswith("exit status 127: ")
          and "/nonexistent/cmd" in err[1])
    x.signal(signal.SIGTERM)
    x.finish()
    s.signal(signal.SIGTERM)
    check("serve exits 0 on SIGTERM", s.finish().rc == 0)


def members_reach(cl, group, n):
    return eventually(lambda: len(cl.call("members", group)) >= n)


def test_groups(ctl, cl, path):
    j1 = ctl.spawn("join", "cli/room", "alice")
    j2 = ctl.spawn("--json", "join", "cli/room")
    check("join joins", members_reach(cl, "cli/room", 2))
    ms = cl.call("members", "cli/room")
    by_pid = {m["pid"]: m for m in ms}
    check("join's value is a str, none without VALUE",
          by_pid.get(j1.pid, {}).get("value") == "alice"
          and j2.pid in by_pid and by_pid[j2.pid]["value"] is None)
    r = ctl.run("members", "cli/room")
    lines = r.out.splitlines()
    rows = [line.split() for line in lines[1:]]
    check("members prints a table in join order", r.rc == 0
          and lines[0].split() == ["CONN", "PID", "UID", "VALUE", "AGE"]
          and [row[0] for row in rows] == [str(m["conn"]) for m in ms]
          and [row[1] for row in rows] == [str(m["pid"]) for m in ms]
          and [row[3] for row in rows] == [
              json.dumps(m["value"]) for m in ms])
    r = ctl.run("--json", "members", "cli/room")
    check("members --json is the member entries", r.rc == 0
          and json.loads(r.out) == ms
          and list(ms[0]) == ["group", "conn", "pid", "uid", "gid", "value",
                              "since", "gen"])
    r = ctl.run("members", "cli/nobody")
    check("members of an empty group: the header, exit 0", r.rc == 0
          and len(r.out.splitlines()) == 1)
    check("members --json of an empty group is []",
          json.loads(ctl.run("--json", "members", "cli/nobody").out) == [])

    r = ctl.run("publish", "cli/room", "hi all")
    check("publish says how many got it", r.rc == 0
          and fields(r.out) == {"delivered": "2", "busy": "none"})
    check("join prints a published str as it is",
          j1.readline() == "hi all")
    line = j2.readline()
    j = json.loads(line) if line else {}
    check("join --json prints group, sender and payload",
          j.get("group") == "cli/room" and j.get("payload") == "hi all"
          and isinstance(j.get("sender"), int))
    r = ctl.run("--json", "publish", "--json-payload", "cli/room", "[1, 2]")
    check("publish --json --json-payload", r.rc == 0
          and json.loads(r.out) == {"delivered": 2, "busy": []})
    check("join prints other payloads as JSON", j1.readline() == "[1,2]")
    j2.readline()
    r = ctl.run("publish", "--no-echo", "cli/room", "x")
    check("publish --no-echo: procregctl is no member, so all get it",
          r.rc == 0 and fields(r.out)["delivered"] == "2")
    j1.readline()
    j2.readline()
    r = ctl.run("publish", "cli/empty", "x")
    check("publish to a group without members: delivered 0, exit 0",
          r.rc == 0 and fields(r.out)["delivered"] == "0")
    # A plain member that publishes with echo false gets nothing back.
    cl.call("join", "cli/room")
    res = cl.call("publish", "cli/room", "from cl", {"echo": False})
    check("echo false: every member but the sender",
          res == {"delivered": 2, "busy": []}
          and j1.readline() == "from cl")
    j2.readline()
    cl.call("leave", "cli/room")

    j3 = ctl.spawn("join", "--count", "1", "--json-value", "cli/room",
                   '{"x": 1}')
    check("join --json-value", members_reach(cl, "cli/room", 3)
          and any(m["value"] == {"x": 1}
                  for m in cl.call("members", "cli/room")))
    ctl.run("publish", "cli/room", "last")
    r = j3.finish()
    check("join --count 1 exits 0 after one publish", r.rc == 0
          and r.out == "last\n")
    j1.signal(signal.SIGINT)
    j2.signal(signal.SIGTERM)
    check("join exits 0 on SIGINT and SIGTERM",
          j1.finish().rc == 0 and j2.finish().rc == 0)
    check("and the memberships are gone",
          eventually(lambda: cl.call("members", "cli/room") == []))

    # A member that never reads is reported busy, and skipped.
    sleeper = Client(path)
    sconn = sleeper.call("hello")["conn"]
    sleeper.call("join", "cli/busy")
    busy = None
    for _ in range(200):
        r = ctl.run("--json", "publish", "cli/busy", "z" * 16000)
        j = json.loads(r.out) if r.rc == 0 else {}
        if j.get("busy"):
            busy = j
            break
    check("publish lists a member that does not read as busy",
          busy == {"delivered": 0, "busy": [sconn]})
    r = ctl.run("publish", "cli/busy", "z" * 16000)
    check("in text too", r.rc == 0 and fields(r.out) == {
        "delivered": "0", "busy": str(sconn)})
    sleeper.close()


def test_keys(ctl, path):
    a = Client(path)
    conn = a.call("hello")["conn"]
    r = ctl.run("keys", str(conn))
    check("keys of a connection with nothing", r.rc == 0
          and r.out == "names:\ngroups:\n")
    a.call("register", "cli/k/b")
    a.call("register", "cli/k/a")
    a.call("join", "cli/g2")
    a.call("join", "cli/g1")
    r = ctl.run("keys", str(conn))
    check("keys prints names and groups, sorted", r.rc == 0 and r.out == (
        "names:\n  cli/k/a\n  cli/k/b\ngroups:\n  cli/g1\n  cli/g2\n"))
    r = ctl.run("--json", "keys", str(conn))
    check("keys --json", r.rc == 0 and json.loads(r.out) == {
        "names": ["cli/k/a", "cli/k/b"], "groups": ["cli/g1", "cli/g2"]})
    r = ctl.run("keys", "999999")
    check("keys of no connection exits 1", r.rc == 1
          and r.err == "procregctl: conn 999999: no such connection\n")
    a.close()


def queue_of(cl, name):
    return cl.call("queue", name)


def queue_reaches(cl, name, n):
    return eventually(lambda: len(queue_of(cl, name)) >= n)


def whereis_json(ctl, name):
    """procregctl whereis --json NAME as a dict, or None."""
    r = ctl.run("--json", "whereis", name)
    if r.rc != 0:
        return None
    try:
        return json.loads(r.out)
    except ValueError:
        return None


def watch_fields(line):
    """A watch line: (seq, kind, name, {key: value}); None if it is not
    one."""
    if line is None:
        return None
    parts = line.split(" ")
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    rest = parts[2:]
    name = rest[0] if rest and "=" not in rest[0] else None
    kv = dict(p.split("=", 1) for p in (rest[1:] if name else rest)
              if "=" in p)
    return int(parts[0]), parts[1], name, kv


def test_usage_part2(ctl):
    check("await without a name exits 2", ctl.run("await").rc == 2)
    check("await -t over a day exits 2",
          ctl.run("await", "-t", "86400001", "x").rc == 2)
    check("send --gen 0 exits 2", ctl.run("send", "--gen", "0", "x",
                                          "p").rc == 2)
    check("send --gen with --conn exits 2",
          ctl.run("send", "--gen", "3", "--conn", "5", "p").rc == 2)
    check("--gen is send's only", ctl.run("call", "--gen", "3", "x",
                                          "p").rc == 2)
    check("--wait is hold's only", ctl.run("recv", "--wait", "x").rc == 2)
    check("--replace is hold's only",
          ctl.run("serve", "--replace", "x", "true").rc == 2)
    check("watch --since of no number exits 2",
          ctl.run("watch", "--since", "abc").rc == 2)
    check("watch with two prefixes exits 2", ctl.run("watch", "a",
                                                     "b").rc == 2)
    check("--groups is watch's only", ctl.run("list", "--groups").rc == 2)
    check("queue without a name exits 2", ctl.run("queue").rc == 2)
    check("queue with an empty name exits 2", ctl.run("queue", "").rc == 2)


def test_await(ctl, cl):
    """await: at once when registered, when registered later, or exit 1
    after -t."""
    e = cl.call("register", "cli/aw/now", {"port": 1})
    r = ctl.run("await", "cli/aw/now")
    f = fields(r.out)
    check("await of a registered name prints it at once", r.rc == 0
          and f.get("name") == "cli/aw/now" and f.get("gen") == str(e["gen"])
          and json.loads(f.get("value", "null")) == {"port": 1})
    r = ctl.run("-t", "100", "await", "cli/aw/never")
    check("await exits 1 when the name does not come in time", r.rc == 1
          and r.out == ""
          and r.err == "procregctl: cli/aw/never: not registered within "
          "100 ms\n")
    # -t is the daemon's timeout: the handle still waits its own on top.
    rcs = [ctl.run("-t", "1", "await", "cli/aw/never").rc for _ in range(20)]
    check("await -t 1 exits 1 (the daemon's timeout, not a local one)",
          rcs == [1] * 20)
    base = cl.call("stats")["awaits"]
    w = ctl.spawn("--json", "-t", "20000", "await", "cli/aw/later")
    check("await waits in the daemon (an await pending)",
          eventually(lambda: cl.call("stats")["awaits"] == base + 1))
    check("and prints nothing meanwhile", w.readline(timeout=0.2) is None)
    e = cl.call("register", "cli/aw/later", "up")
    r = w.finish()
    j = json.loads(r.out) if r.rc == 0 else {}
    check("await returns once the name is registered, with its entry",
          r.rc == 0 and j.get("name") == "cli/aw/later"
          and j.get("gen") == e["gen"] and j.get("value") == "up"
          and j.get("conn") == e["conn"])
    # The shell idiom: start-app runs only once db is there.
    cmd = (f"{CTL} -s {ctl.path} -t 20000 await cli/aw/db >/dev/null && "
           "echo started")
    sh = Bg(["sh", "-c", cmd])
    check("`await db && start-app` does not start before db is there",
          eventually(lambda: cl.call("stats")["awaits"] == base + 1)
          and sh.readline(timeout=0.2) is None)
    cl.call("register", "cli/aw/db")
    check("and starts it once db is registered",
          sh.readline() == "started" and sh.finish().rc == 0)
    r = Bg(["sh", "-c", f"{CTL} -s {ctl.path} -t 50 await cli/aw/nodb "
            "2>/dev/null && echo started"]).finish()
    check("and never when db does not come", r.rc == 1 and r.out == "")


def test_send_gen(ctl, path):
    cl = Client(path)
    e = cl.call("register", "cli/fence")
    r = ctl.run("send", "--gen", str(e["gen"]), "cli/fence", "to you")
    m = cl.push()
    check("send --gen of the current generation delivers", r.rc == 0
          and r.out == "" and m[:2] == [2, "message"]
          and m[2][0] == "cli/fence" and m[2][2] == "to you")
    r = ctl.run("send", "--gen", str(e["gen"] + 1), "cli/fence", "no")
    check("send --gen of another generation exits 1, stale", r.rc == 1
          and r.err == f"procregctl: cli/fence: stale: its registration "
          f"has another generation than {e['gen'] + 1}\n")
    cl.call("unregister", "cli/fence")
    e2 = cl.call("register", "cli/fence")
    r = ctl.run("send", "--gen", str(e["gen"]), "cli/fence", "old")
    check("a new registration of the name makes the old gen stale",
          r.rc == 1 and "stale" in r.err and e2["gen"] > e["gen"])
    r = ctl.run("send", "--gen", "5", "cli/fence/none", "x")
    check("send --gen to a missing name exits 1", r.rc == 1
          and "not registered" in r.err)
    check("no message came for the stale sends",
          cl.call("stats") is not None and cl.pushes == [])
    cl.close()


def test_queue(ctl, cl, path):
    w1, w2 = Client(path), Client(path)
    c1, c2 = w1.call("hello")["conn"], w2.call("hello")["conn"]
    cl.call("register", "cli/q")
    r = ctl.run("queue", "cli/q")
    check("queue of a name nobody waits for prints nothing", r.rc == 0
          and r.out == "" and r.err == "")
    check("queued", w1.call("register", "cli/q", None, {"queue": True})
          == {"queued": 1} and w2.call("register", "cli/q", "v",
                                       {"queue": True}) == {"queued": 2})
    r = ctl.run("queue", "cli/q")
    check("queue prints the waiters, first in line first", r.rc == 0
          and r.out == f"{c1}\n{c2}\n")
    r = ctl.run("--json", "queue", "cli/q")
    check("queue --json is an array", r.rc == 0
          and json.loads(r.out) == [c1, c2])
    r = ctl.run("--json", "queue", "cli/q/none")
    check("queue --json of an unregistered name is []", r.rc == 0
          and json.loads(r.out) == [])
    w1.close()
    check("a waiter that goes away leaves the queue",
          eventually(lambda: queue_of(cl, "cli/q") == [c2]))
    cl.call("unregister", "cli/q")
    check("the next waiter owns the name", w2.push()[:2] == [2, "acquired"]
          and ctl.run("queue", "cli/q").out == "")
    w2.close()


def test_hold_wait(ctl, cl, path):
    """hold --wait: queue, run CMD once the name passes; replacement."""
    cl.call("register", "cli/hw")
    me = cl.call("hello")["conn"]
    h = ctl.spawn("hold", "--wait", "cli/hw", "--", "sleep", "30")
    line = h.errline()
    check("hold --wait of a taken name says who holds it and its place",
          line == f"procregctl: cli/hw is held by conn {me} "
          f"(pid {os.getpid()}); waiting, number 1 in its queue")
    check("it waits in the queue, CMD not started",
          queue_reaches(cl, "cli/hw", 1) and children(h.pid) == []
          and h.proc.poll() is None)
    e0 = cl.call("whereis", "cli/hw")
    cl.call("unregister", "cli/hw")
    e = cl.call("whereis", "cli/hw")
    check("the name passes to it at once, with a higher gen",
          e is not None and e["pid"] == h.pid and e["gen"] > e0["gen"])
    check("it says so", h.errline() ==
          f"procregctl: cli/hw passed to us (gen {e['gen'] if e else 0})")
    kids = []
    check("and runs CMD", eventually(lambda: kids.extend(children(h.pid))
                                     or kids))
    h.signal(signal.SIGTERM)
    r = h.finish()
    check("then it is a hold: exit with CMD's status", r.rc == 143)
    check("the name is released with CMD",
          eventually(lambda: cl.call("whereis", "cli/hw") is None))

    r = ctl.run("hold", "--wait", "cli/hw2", "--", "sh", "-c", "exit 5")
    check("hold --wait of a free name holds it at once", r.rc == 5
          and r.err == "")
    cl.call("register", "cli/hw3")
    h = ctl.spawn("hold", "-w", "cli/hw3", "--", "sleep", "30")
    queue_reaches(cl, "cli/hw3", 1)
    h.signal(signal.SIGTERM)
    r = h.finish()
    check("SIGTERM while it waits: exit 143, no CMD ever run",
          r.rc == 143 and "waiting" in r.err and "passed" not in r.err)
    # Its exit and the daemon's noticing the closed socket are two events:
    # a slow daemon (valgrind) may not have purged it yet.
    check("and it left the queue",
          eventually(lambda: queue_of(cl, "cli/hw3") == []))
    cl.call("unregister", "cli/hw3")

    # Replacement: the replaced hold's CMD is stopped.
    a = ctl.spawn("hold", "--allow-replacement", "cli/rep", "--", "sleep",
                  "30")
    ea = wait_registered(cl, "cli/rep")
    r = ctl.run("hold", "cli/rep", "--", "true")
    check("without --replace the name is taken", r.rc == 1)
    b = ctl.spawn("hold", "--replace", "cli/rep", "--", "sleep", "30")
    check("hold --replace takes it over", eventually(
        lambda: (cl.call("whereis", "cli/rep") or {}).get("pid") == b.pid))
    e = cl.call("whereis", "cli/rep")
    r = a.finish()
    check("the replaced hold stops CMD and exits 5 (lost)", r.rc == 5
          and "procregctl: lost cli/rep (replaced): stopping CMD\n" in r.err)
    check("with a new generation", ea is not None and e is not None
          and e["gen"] > ea["gen"])
    r = ctl.run("hold", "--replace", "cli/rep", "--", "true")
    check("--replace of a holder that does not allow it: taken, exit 1",
          r.rc == 1 and f"is held by conn {e['conn'] if e else 0}" in r.err)
    b.signal(signal.SIGTERM)
    check("and that holder goes on until stopped", b.finish().rc == 143)


def test_leader_demo(ctl, cl):
    """The shell demo: three `hold --wait leader -- sleep 1000`; killing
    the holder hands leader to the next, with a higher gen, and a watch
    started before shows each hand-over in order; a watch restarted with
    --since shows the one it missed, with no gap."""
    name = "cli/leader"
    base = cl.call("stats")["subscriptions"]
    w = ctl.spawn("watch", name)
    check("watch subscribes",
          eventually(lambda: cl.call("stats")["subscriptions"] == base + 1))
    holds = []
    for i in range(3):
        holds.append(ctl.spawn("hold", "--wait", name, "--", "sleep",
                               "1000"))
        if i == 0:
            wait_registered(cl, name)
        else:
            queue_reaches(cl, name, i)
    e = whereis_json(ctl, name)
    check("the first holds leader, the others wait in order",
          e is not None and e["pid"] == holds[0].pid
          and len(queue_of(cl, name)) == 2)
    first = watch_fields(w.readline())
    check("watch shows the first registration", first is not None
          and first[1:3] == ("registered", name)
          and first[3].get("pid") == str(holds[0].pid)
          and first[3].get("gen") == str(e["gen"] if e else -1))
    last_seq = first[0] if first else 0
    gens = [e["gen"] if e else 0]
    for k in (1, 2):
        holds[k - 1].signal(signal.SIGKILL)
        holds[k - 1].finish()
        got = {}

        def handed():
            j = whereis_json(ctl, name)
            if j and j["pid"] == holds[k].pid:
                got.update(j)
                return True
            return False
        check(f"killing holder {k} hands leader to the next within 5 s, "
              "with a higher gen", eventually(handed, timeout=5.0)
              and got["gen"] > gens[-1])
        gens.append(got.get("gen", 0))
        kids = []
        check(f"holder {k + 1} runs its command", eventually(
            lambda: kids.extend(children(holds[k].pid)) or kids))
        ev = watch_fields(w.readline())
        check(f"watch shows hand-over {k} in order", ev is not None
              and ev[0] > last_seq and ev[1:3] == ("handover", name)
              and ev[3].get("pid") == str(holds[k].pid)
              and ev[3].get("gen") == str(got.get("gen")))
        last_seq = ev[0] if ev else last_seq
    w.signal(signal.SIGTERM)
    r = w.finish()
    check("watch exits 0 on SIGTERM, having printed nothing else",
          r.rc == 0 and r.out == "" and r.err == "")

    # A hand-over while nobody watches: a fourth candidate takes over.
    holds.append(ctl.spawn("hold", "--wait", name, "--", "sleep", "1000"))
    queue_reaches(cl, name, 1)
    holds[2].signal(signal.SIGKILL)
    holds[2].finish()
    check("the fourth holds leader now", eventually(
        lambda: (whereis_json(ctl, name) or {}).get("pid") == holds[3].pid,
        timeout=5.0))
    e = whereis_json(ctl, name)
    w = ctl.spawn("watch", "--since", str(last_seq), name)
    ev = watch_fields(w.readline())
    check("watch --since LAST shows the missed hand-over", ev is not None
          and ev[0] > last_seq and ev[1:3] == ("handover", name)
          and ev[3].get("pid") == str(holds[3].pid)
          and ev[3].get("gen") == str(e["gen"] if e else -1))
    w.signal(signal.SIGTERM)
    r = w.finish()
    check("with no gap marker and no snapshot", r.rc == 0 and r.out == ""
          and r.err == "")
    holds[3].signal(signal.SIGTERM)
    check("the last holder exits with its command's status",
          holds[3].finish().rc == 143)


def test_watch(ctl, cl, path):
    """watch: snapshot, each kind of change, --groups, --json."""
    other = Client(path)
    other_conn = other.call("hello")["conn"]
    me = cl.call("hello")["conn"]
    ex = cl.call("register", "cli/wa/x", 1)
    cl.call("join", "cli/wa/g", "m")
    base = cl.call("stats")["subscriptions"]
    w = ctl.spawn("watch", "cli/wa/")
    wj = ctl.spawn("--json", "watch", "--groups", "cli/wa/")
    eventually(lambda: cl.call("stats")["subscriptions"] == base + 2)
    snap = watch_fields(w.readline())
    seq0 = cl.call("stats")["seq"]
    check("watch prints the snapshot: SEQ entry NAME conn pid gen value",
          snap == (seq0, "entry", "cli/wa/x", {
              "conn": str(me), "pid": str(os.getpid()),
              "gen": str(ex["gen"]), "value": "1"}))
    js = [json.loads(wj.readline() or "null") for _ in range(2)]
    check("watch --json --groups: the entries, then the members",
          js[0] == {"seq": seq0, "kind": "entry", "payload": dict(ex)}
          and js[1] is not None and js[1]["kind"] == "member"
          and js[1]["payload"]["group"] == "cli/wa/g"
          and js[1]["payload"]["value"] == "m")
    ey = cl.call("register", "cli/wa/y", "y")
    cl.call("register", "cli/other")
    cl.call("update", "cli/wa/y", {"v": 2})
    cl.call("unregister", "cli/wa/y")
    em = other.call("join", "cli/wa/g")
    other.call("leave", "cli/wa/g")
    got = [watch_fields(w.readline()) for _ in range(3)]
    check("watch prints each change under the prefix, in order", got == [
        (seq0 + 1, "registered", "cli/wa/y", {
            "conn": str(me), "pid": str(os.getpid()),
            "gen": str(ey["gen"]), "value": '"y"'}),
        (seq0 + 3, "updated", "cli/wa/y", {
            "conn": str(me), "pid": str(os.getpid()),
            "gen": str(ey["gen"]), "value": '{"v":2}'}),
        (seq0 + 4, "unregistered", "cli/wa/y", {"reason": "unregistered"})])
    js = [json.loads(wj.readline() or "null") for _ in range(5)]
    check("watch --json prints {seq, kind, payload} per change",
          [(j["seq"], j["kind"]) for j in js if j] == [
              (seq0 + 1, "registered"), (seq0 + 3, "updated"),
              (seq0 + 4, "unregistered"), (seq0 + 5, "joined"),
              (seq0 + 6, "left")]
          and js[2]["payload"] == ["cli/wa/y", "unregistered"]
          and js[3]["payload"] == em and js[4]["payload"]["conn"] ==
          other_conn)
    check("without --groups no group changes",
          w.readline(timeout=0.3) is None)
    w.signal(signal.SIGINT)
    wj.signal(signal.SIGTERM)
    check("watch exits 0 on SIGINT and SIGTERM",
          w.finish().rc == 0 and wj.finish().rc == 0)
    r = ctl.run("-t", "2000", "watch", "--since", str(seq0 + 1000))
    check("watch --since later than the last event exits 4 (bad_request)",
          r.rc == 4 and "bad request" in r.err)
    w = ctl.spawn("watch", "--since", str(seq0 + 1), "cli/wa/")
    got = [watch_fields(w.readline()) for _ in range(2)]
    check("watch --since resumes after SEQ: no snapshot, the changes",
          [g[:3] for g in got if g] == [
              (seq0 + 3, "updated", "cli/wa/y"),
              (seq0 + 4, "unregistered", "cli/wa/y")])
    w.signal(signal.SIGTERM)
    check("and nothing else", w.finish().out == "")
    cl.call("leave", "cli/wa/g")
    cl.call("unregister", "cli/wa/x")
    cl.call("unregister", "cli/other")
    other.close()
    # A value beyond int64 is no JSON number: the entry stays an object.
    base = cl.call("stats")["subscriptions"]
    wj = ctl.spawn("--json", "watch", "cli/wb/")
    eventually(lambda: cl.call("stats")["subscriptions"] == base + 1)
    cl.call("register", "cli/wb/big", 2**64 - 1)
    j = json.loads(wj.readline() or "null")
    r = ctl.run("--json", "whereis", "cli/wb/big")
    check("watch --json: an entry whose value is beyond int64 is the "
          "entry object, as whereis --json prints it",
          j is not None and j["kind"] == "registered"
          and isinstance(j["payload"], dict)
          and j["payload"].get("name") == "cli/wb/big"
          and r.rc == 0 and json.loads(r.out) == j["payload"])
    cl.call("unregister", "cli/wb/big")
    wj.signal(signal.SIGTERM)
    wj.finish()


def test_values(ctl, path):
    """Values JSON has no word for, as procregctl prints them: exactly
    what it printed when it went through procreg_format_json's text
    (whereis, list, recv --json: one JSON value; whereis: that text).
    Registered and sent as raw msgpack, so that str with bytes that are
    not UTF-8, ext types below 0 and keys that are not strings get
    there."""
    def p(o):
        return msgpack.packb(o, use_bin_type=True)

    def f32(x):
        return b"\xca" + struct.pack(">f", x)

    keys = (b"\x88" + p(1) + p("a") + p(None) + p(2) + p([1, 2]) + p(3)
            + p(b"k") + p(4) + p(1.5) + p(5) + p(True) + p(6)
            + p(msgpack.ExtType(1, b"x")) + p(7) + p(2**64 - 1) + p(8))
    nonfinite = (b"\x94" + p(float("nan")) + p(float("inf"))
                 + f32(float("-inf")) + f32(float("nan")))
    # (name, msgpack, --json text, whereis text)
    cases = [
        ("bin", p(b"\xff\x00a\xc3\xa9"), '"\ufffd\\u0000a\u00e9"',
         '"\\ufffd\\u0000a\u00e9"'),
        ("badstr", b"\xa6a\xff\xed\xa0\x80b", '"a' + "\ufffd" * 4 + 'b"',
         '"a' + "\\ufffd" * 4 + 'b"'),
        ("ctrl", p("tab\there \"q\" \\ \x7f"),
         '"tab\\there \\"q\\" \\\\ \x7f"',
         '"tab\\u0009here \\"q\\" \\\\ \x7f"'),
        ("ext", b"\x93\xd4\xfd\x00" + p(msgpack.ExtType(5, b"abc"))
         + p(msgpack.ExtType(0, b"")),
         '[{"ext": -3, "size": 1}, {"ext": 5, "size": 3}, '
         '{"ext": 0, "size": 0}]',
         '[{"ext":-3,"size":1},{"ext":5,"size":3},{"ext":0,"size":0}]'),
        # Beyond int64, or a str key with a NUL: the whole value is the
        # str of its text.
        ("bigtop", p(2**64 - 1), '"18446744073709551615"',
         "18446744073709551615"),
        ("bignest", p([1, {"k": 2**63}]),
         '"[1,{\\"k\\":9223372036854775808}]"',
         '[1,{"k":9223372036854775808}]'),
        ("nulkey", p({"a\x00b": 1}), '"{\\"a\\\\u0000b\\":1}"',
         '{"a\\u0000b":1}'),
        ("ints", p([2**63 - 1, -2**63, 0, -1]),
         "[9223372036854775807, -9223372036854775808, 0, -1]",
         "[9223372036854775807,-9223372036854775808,0,-1]"),
        ("f64", p([0.1, 1.0, -0.0, 1e300, 1.5]),
         "[0.10000000000000001, 1.0, -0.0, 1.0000000000000001e300, 1.5]",
         "[0.1,1.0,-0.0,1e+300,1.5]"),
        ("f32", b"\x93" + f32(0.1) + f32(1.0) + f32(3.4e38),
         "[0.10000000000000001, 1.0, 3.4e38]", "[0.1,1.0,3.4e+38]"),
        ("nonfinite", nonfinite, "[null, null, null, null]",
         "[null,null,null,null]"),
        # Keys that are no str: their text, as a str (big ints too).
        ("keys", keys,
         '{"1": "a", "null": 2, "[1,2]": 3, "\\"k\\"": 4, "1.5": 5, '
         '"true": 6, "{\\"ext\\":1,\\"size\\":1}": 7, '
         '"18446744073709551615": 8}',
         '{"1":"a","null":2,"[1,2]":3,"\\"k\\"":4,"1.5":5,"true":6,'
         '"{\\"ext\\":1,\\"size\\":1}":7,"18446744073709551615":8}'),
        ("binkey", b"\x81" + p(b"\xff") + p(1), '{"\\"\\\\ufffd\\"": 1}',
         '{"\\"\\\\ufffd\\"":1}'),
        ("keybad", b"\x81\xa2\xff\xfe\x01", '{"\ufffd\ufffd": 1}',
         '{"\\ufffd\\ufffd":1}'),
        # A key's text is cut at 255 bytes, a cut character is U+FFFD.
        ("longkey", b"\x81" + p(["x" * 300]) + p(1),
         '{"[\\"' + "x" * 253 + '": 1}', '{"[\\"' + "x" * 253 + '":1}'),
        ("cutkey", b"\x81" + p(["\u00e9" * 200]) + p(1),
         '{"[\\"' + "\u00e9" * 126 + '\ufffd": 1}',
         '{"[\\"' + "\u00e9" * 126 + '\\ufffd":1}'),
        # A repeated key: the last value, in the first one's place.
        ("dupkey", b"\x83\xa1a\x01\xa1b\x02\xa1a\x03", '{"a": 3, "b": 2}',
         '{"a":1,"b":2,"a":3}'),
        ("nest", p({"x": [None, True, False, -5, "s", {}, []], "": 1,
                    "a\nb": 2}),
         '{"x": [null, true, false, -5, "s", {}, []], "": 1, "a\\nb": 2}',
         '{"x":[null,true,false,-5,"s",{},[]],"":1,"a\\u000ab":2}'),
    ]
    raw = Client(path)
    # Its replies echo the values back: read them without decoding.
    raw.unpacker = msgpack.Unpacker(raw=True, strict_map_key=False,
                                    use_list=False,
                                    ext_hook=lambda code, data: data)

    def request(method, *params):
        raw.msgid += 1
        raw.sock.sendall(b"\x94\x00" + p(raw.msgid) + p(method)
                         + bytes([0x90 + len(params)]) + b"".join(params))
        return raw.response(raw.msgid)[0] is None

    entries = {}
    for name, value, js, text in cases:
        ok = request("register", p("cli/val/" + name), value)
        r = ctl.run("--json", "whereis", "cli/val/" + name)
        m = re.fullmatch(r'\{"name": "cli/val/\w+", .*"value": (.*), '
                         r'"since": \d+, "gen": \d+\}\n', r.out, re.S)
        entries[name] = r.out.rstrip("\n")
        check(f"whereis --json prints the value {name} as before",
              ok and r.rc == 0 and m is not None and m.group(1) == js)
        r = ctl.run("whereis", "cli/val/" + name)
        check(f"whereis prints the value {name} as before", r.rc == 0
              and fields(r.out).get("value") == text)
    r = ctl.run("--json", "list", "cli/val/")
    check("list --json prints each entry as whereis --json does",
          r.rc == 0 and all(e in r.out for e in entries.values()))
    rv = ctl.spawn("--json", "recv", "cli/val/inbox", "--count",
                   str(len(cases)))
    ok = eventually(lambda: ctl.run("whereis", "cli/val/inbox").rc == 0)
    for name, value, js, text in cases:
        ok = request("send", p("cli/val/inbox"), value) and ok
    for name, value, js, text in cases:
        line = rv.readline() or ""
        check(f"recv --json prints the payload {name} as before", ok
              and line.endswith(', "payload": ' + js + "}"))
    check("recv --count exits 0", rv.finish().rc == 0)
    raw.close()


def test_watch_gap_overflow(tmp):
    """A daemon with a short history and a small outbuf: --since too old
    prints a gap and a new snapshot; a watch that falls behind resumes
    with nothing lost or doubled."""
    path = os.path.join(tmp, "small.sock")
    daemon = subprocess.Popen([DAEMON, "-s", path, "--history", "3000",
                               "--max-outbuf", "4096"],
                              stderr=subprocess.DEVNULL)
    ok = eventually(lambda: os.path.exists(path)) and eventually(
        lambda: try_connect(path))
    check("a daemon with --history 3000 --max-outbuf 4096 starts", ok)
    ctl = Ctl(path)
    cl = Client(path)
    for i in range(5):
        cl.call("register", f"g/{i}", i)
    for i in range(3000):
        cl.call("register", "pad", None)
        cl.call("unregister", "pad")
    seq = cl.call("stats")["seq"]
    w = ctl.spawn("watch", "--since", "2", "g/")
    lines = [w.readline() for _ in range(6)]
    w.signal(signal.SIGTERM)
    r = w.finish()
    check("watch --since older than the history prints a gap line, then "
          "a new snapshot", lines[0] == f"{seq} gap since=2"
          and [(watch_fields(x) or (0, 0, 0))[1:3] for x in lines[1:]] == [
              ("entry", f"g/{i}") for i in range(5)]
          and r.rc == 0 and r.out == "")
    w = ctl.spawn("--json", "watch", "--since", "2", "g/")
    first = w.readline()
    w.signal(signal.SIGTERM)
    r = w.finish()
    check("with --json the gap is {seq, kind: gap, since}",
          first is not None and json.loads(first) == {
              "seq": seq, "kind": "gap", "since": 2}
          and len(r.out.splitlines()) == 5)

    # Falling behind: stdout not read while 600 changes of 1 kB come.
    w = Bg(ctl.argv(["watch", "o/"]))
    eventually(lambda: cl.call("stats")["subscriptions"] == 1)
    first = cl.call("stats")["seq"] + 1
    value = "v" * 1000
    for i in range(600):
        cl.call("register", f"o/{i:03d}", value)
    last = cl.call("stats")["seq"]
    seqs = []
    while len(seqs) < 600:
        f = watch_fields(w.readline())
        if f is None:
            break
        seqs.append(f[0])
    w.signal(signal.SIGTERM)
    r = w.finish()
    check("a watch that fell behind resumes: every change once, in order",
          seqs == list(range(first, last + 1)) and r.rc == 0
          and r.out == "")
    check("saying so on stderr, and no gap line",
          "fell behind" in r.err and "resuming" in r.err)
    cl.close()
    stop_daemon(daemon, "the small daemon")


def test_daemon_restart(ctl, cl, daemon, path):
    """The daemon goes away: monitor, and recv, serve, join and watch with
    --no-reconnect, exit 3; hold waits and
    registers its name again on the new daemon, or, someone else having
    taken it first, stops its command and exits 5; of two hold --wait, one
    runs its command afterwards, never both."""
    h = ctl.spawn("hold", "cli/phoenix", "--", "sleep", "30")
    hu = ctl.spawn("hold", "cli/usurped", "--", "sleep", "300")
    wait_registered(cl, "cli/usurped")
    gu = guarded(hu.pid)
    usurped = Proc(gu[1]) if gu else None
    rv = ctl.spawn("recv", "--no-reconnect", "cli/orphan")
    sv = ctl.spawn("serve", "--no-reconnect", "cli/orphan-serve", "--", "cat")
    jn = ctl.spawn("join", "--no-reconnect", "cli/orphan-group")
    wait_registered(cl, "cli/phoenix")
    wait_registered(cl, "cli/orphan")
    wait_registered(cl, "cli/orphan-serve")
    members_reach(cl, "cli/orphan-group", 1)
    hw1 = ctl.spawn("hold", "--wait", "cli/lead", "--", "sleep", "30")
    wait_registered(cl, "cli/lead")
    hw2 = ctl.spawn("hold", "--wait", "cli/lead", "--", "sleep", "30")
    queue_reaches(cl, "cli/lead", 1)
    base = cl.call("stats")["subscriptions"]
    wt = ctl.spawn("watch", "--no-reconnect", "cli/")
    eventually(lambda: cl.call("stats")["subscriptions"] == base + 1)
    base = cl.call("stats")["monitors"]
    m = ctl.spawn("monitor", "cli/phoenix")
    monitors_reach(cl, base + 1)
    cl.close()
    # Stopped across the restart, so that another takes its name first.
    hu.signal(signal.SIGSTOP)
    stop_daemon(daemon, "the daemon")
    r = rv.finish()
    check("recv --no-reconnect exits 3 when the daemon goes away", r.rc == 3
          and r.err.startswith("procregctl: "))
    r = sv.finish()
    check("serve --no-reconnect exits 3 when the daemon goes away",
          r.rc == 3 and r.err.startswith("procregctl: "))
    r = jn.finish()
    check("join --no-reconnect exits 3 when the daemon goes away",
          r.rc == 3 and r.err.startswith("procregctl: "))
    r = m.finish()
    check("monitor exits 3 when the daemon goes away", r.rc == 3)
    r = wt.finish()
    check("watch --no-reconnect exits 3 when the daemon goes away",
          r.rc == 3 and r.err.startswith("procregctl: "))
    daemon, ok = start_daemon(path)
    check("a new daemon starts on the same socket", ok)
    cl = Client(path)
    e = wait_registered(cl, "cli/phoenix")
    check("hold registers its name again on the new daemon", e is not None
          and e["pid"] == h.pid)
    cl.call("register", "cli/usurped")
    hu.signal(signal.SIGCONT)
    r = hu.finish()
    check("a hold whose name another took while the daemon restarted stops "
          "its CMD and exits 5", r.rc == 5 and "cli/usurped was taken "
          "meanwhile" in r.err and "lost cli/usurped (taken): stopping CMD"
          in r.err and usurped is not None and usurped.gone())
    cl.call("unregister", "cli/usurped")

    # Both hold --wait come back: whoever registers first holds cli/lead;
    # if that is the waiter, the old holder lost it and stops its CMD.
    def settled():
        e = cl.call("whereis", "cli/lead")
        if e is None:
            return False
        if e["pid"] == hw1.pid:
            return len(cl.call("queue", "cli/lead")) == 1
        return e["pid"] == hw2.pid and hw1.proc.poll() is not None
    check("after the restart one hold --wait holds cli/lead",
          eventually(settled))
    e = cl.call("whereis", "cli/lead") or {}
    if e.get("pid") == hw2.pid:
        r = hw1.finish()
        kids = []
        check("the waiter got it first: the old holder stopped its CMD "
              "and exits 5 (lost)",
              r.rc == 5 and "lost cli/lead (disconnected)" in r.err
              and eventually(lambda: kids.extend(children(hw2.pid)) or kids))
        hw2.signal(signal.SIGTERM)
        check("and the new one runs until stopped", hw2.finish().rc == 143)
    else:
        check("the holder got it back and keeps its CMD; the waiter waits",
              e.get("pid") == hw1.pid and len(children(hw1.pid)) == 1
              and children(hw2.pid) == [] and hw2.proc.poll() is None)
        hw1.signal(signal.SIGTERM)
        check("the old holder exits with its CMD's status",
              hw1.finish().rc == 143)
        check("and the waiter takes over", eventually(
            lambda: (cl.call("whereis", "cli/lead") or {}).get("pid")
            == hw2.pid))
        hw2.signal(signal.SIGTERM)
        check("and runs until stopped", hw2.finish().rc == 143)
    h.signal(signal.SIGTERM)
    r = h.finish()
    check("and still exits with CMD's status", r.rc == 143
          and "held again" in r.err)
    cl.close()
    return daemon


def lines_until(bg, pred):
    """bg's stdout lines up to the first that pred accepts (included);
    None when its output ends or stops first."""
    got = []
    while True:
        line = bg.readline()
        if line is None:
            return None
        got.append(line)
        if pred(line):
            return got


def test_reconnect(ctl, daemon, path):
    """Issue 17: recv, serve, join and watch ride out a daemon restart.
    recv and serve register NAME again and go on (taken meanwhile: exit
    5), join joins again, watch prints SEQ restarted and the new daemon's
    snapshot; each says on stderr that the daemon went away and is back."""
    cl = Client(path)
    rv = ctl.spawn("recv", "rc/recv")
    rt = ctl.spawn("recv", "rc/taken")
    sv = ctl.spawn("serve", "rc/serve", "--", "tr", "a-z", "A-Z")
    jn = ctl.spawn("join", "rc/group")
    for name in ("rc/recv", "rc/taken", "rc/serve"):
        wait_registered(cl, name)
    members_reach(cl, "rc/group", 1)
    wt = ctl.spawn("watch", "rc/")
    before = lines_until(wt, lambda l: " entry rc/taken " in l)
    wj = ctl.spawn("--json", "watch", "rc/")
    jbefore = lines_until(wj, lambda l: json.loads(l)["payload"]["name"]
                          == "rc/taken")
    check("watch prints the snapshot before the restart",
          before is not None and len(before) == 3
          and jbefore is not None and len(jbefore) == 3)
    check("recv and join work before the restart",
          ctl.run("send", "rc/recv", "one").rc == 0
          and rv.readline() == "one"
          and ctl.run("publish", "rc/group", "p1").rc == 0
          and jn.readline() == "p1")
    cl.close()
    # Stopped across the restart, so that another takes its name first.
    rt.signal(signal.SIGSTOP)
    stop_daemon(daemon, "the daemon (issue 17)")
    daemon, ok = start_daemon(path)
    check("a new daemon starts on the same socket (issue 17)", ok)
    cl = Client(path)
    cl.call("register", "rc/taken")
    rt.signal(signal.SIGCONT)
    r = rt.finish()
    check("a recv whose name another took while the daemon restarted "
          "exits 5", r.rc == 5 and "rc/taken was taken meanwhile" in r.err)
    e = wait_registered(cl, "rc/recv")
    check("recv registers its name again on the new daemon",
          e is not None and e["pid"] == rv.pid)
    check("and prints a message sent after the restart",
          ctl.run("send", "rc/recv", "two").rc == 0
          and rv.readline() == "two")
    e = wait_registered(cl, "rc/serve")
    r = ctl.run("call", "rc/serve", "again")
    check("serve registers its name again and answers calls",
          e is not None and e["pid"] == sv.pid and r.rc == 0
          and r.out == "AGAIN\n")
    check("join joins again", members_reach(cl, "rc/group", 1))
    r = ctl.run("publish", "rc/group", "p2")
    check("and prints a publish after the restart", r.rc == 0
          and jn.readline() == "p2")
    cl.call("register", "rc/new")
    after = lines_until(wt, lambda l: " registered rc/new " in l)
    mark = [i for i, l in enumerate(after or []) if l.endswith(" restarted")]
    names = " ".join(after[mark[0]:]) if mark else ""
    check("watch prints SEQ restarted, then the new daemon's names",
          after is not None and len(mark) == 1
          and re.fullmatch(r"\d+ restarted", after[mark[0]]) is not None
          and " rc/recv " in names and " rc/serve " in names
          and " rc/taken " in names
          and not any(" rc/recv " in l for l in after[:mark[0]]))
    jafter = lines_until(wj, lambda l: json.loads(l)["kind"] == "registered"
                         and json.loads(l)["payload"]["name"] == "rc/new")
    kinds = [json.loads(l)["kind"] for l in jafter or []]
    check("watch --json prints {\"seq\": SEQ, \"kind\": \"restarted\"}",
          kinds.count("restarted") == 1 and set(json.loads(
              jafter[kinds.index("restarted")])) == {"seq", "kind"})
    for bg, what in ((rv, "recv"), (sv, "serve"), (jn, "join"),
                     (wt, "watch"), (wj, "watch --json")):
        bg.signal(signal.SIGTERM)
        r = bg.finish()
        check(f"{what} said the daemon went away and is back, and exits 0 "
              "on SIGTERM", r.rc == 0 and "the daemon went away" in r.err
              and "the daemon is back" in r.err)
    cl.call("unregister", "rc/new")
    cl.close()
    return daemon


def test_hold_evicted(ctl, cl, tmp):
    """Issue 12, the first scenario: hold victim, evict victim, hold victim
    again.  The evicted hold stops its CMD's whole process group and exits
    5 (lost), and only once all of it has ended; the second holder runs
    after that, with nothing of the first left."""
    name = "cli/hold-victim"
    pidf = os.path.join(tmp, "victim.pids")
    h = ctl.spawn("hold", name, "--", "sh", "-c",
                  f"sleep 300 & echo $$ $! > {pidf}.new && mv {pidf}.new "
                  f"{pidf}; wait")
    first = pids_written(pidf)
    check("the first hold's CMD runs: a shell and its background sleep",
          len(first) == 2 and not any(p.gone() for p in first))
    check("in a process group of its own", len(first) == 2
          and first[0].pgrp == first[1].pgrp != os.getpgrp())
    r = ctl.run("evict", name)
    check("an administrator evicts the name", r.rc == 0)
    r = h.finish()
    check("the evicted hold exits 5, the name was lost", r.rc == 5
          and f"procregctl: lost {name} (evicted): stopping CMD\n" in r.err)
    # No eventually: hold exits only once the group has ended.
    check("by then every process of its CMD has gone (the shell and the "
          "sleep it started)", len(first) == 2
          and all(p.gone() for p in first))
    check("the whole group has", len(first) == 2
          and group_members(first[0].pgrp) == [])
    r = ctl.run("hold", name, "--", "sh", "-c", "echo second holder runs")
    check("the second hold runs its command after that", r.rc == 0
          and r.out == "second holder runs\n")
    rm_f(pidf)


def test_hold_candidates_killed(ctl, cl, tmp):
    """Issue 12, the second scenario: three hold --wait candidates of one
    name, each CMD `sh -c 'echo X leads; sleep 300'`.  kill -9 A's
    procregctl, then kill (SIGTERM) B's and C's: afterwards no sleep of
    any of them is left."""
    name = "cli/elect"
    files = {k: os.path.join(tmp, f"elect.{k}") for k in "ABC"}
    holds = {}
    for i, k in enumerate("ABC"):
        holds[k] = ctl.spawn(
            "hold", "--wait", name, "--", "sh", "-c",
            f"echo $$ > {files[k]}.new && mv {files[k]}.new {files[k]}; "
            f"echo {k} leads; sleep 300")
        if i == 0:
            wait_registered(cl, name)
        else:
            queue_reaches(cl, name, i)
    check("A leads", holds["A"].readline() == "A leads")
    a = pids_written(files["A"])
    a = with_children(a) if a else a
    check("A's CMD runs: its shell and the shell's sleep", len(a) == 2
          and not any(p.gone() for p in a))
    holds["A"].signal(signal.SIGKILL)
    # Not finish(): that reads A's output to its end, which whatever is
    # left of A's CMD would hold open.
    try:
        rc = holds["A"].proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    check("kill -9 of A's procregctl", rc == -9)
    check("B leads next", holds["B"].readline() == "B leads")
    b = pids_written(files["B"])
    b = with_children(b) if b else b
    check("B's CMD runs: its shell and the shell's sleep", len(b) == 2
          and not any(p.gone() for p in b))
    check("A's shell and sleep do not outlive A's procregctl", len(a) == 2
          and eventually(lambda: all(p.gone() for p in a)))
    # C first, and to its end: signalled together, B's exit could hand
    # the name to C before C handles its SIGTERM, and C would run CMD.
    holds["C"].signal(signal.SIGTERM)
    rc = holds["C"].finish()
    holds["B"].signal(signal.SIGTERM)
    rb = holds["B"].finish()
    check("SIGTERM to B's procregctl: its CMD's status, 143", rb.rc == 143)
    check("SIGTERM to C's, still waiting: 143, it never ran CMD",
          rc.rc == 143 and not os.path.exists(files["C"]))
    check("B's shell and sleep are gone when B exits", len(b) == 2
          and all(p.gone() for p in b))
    check("no process is left in A's or B's CMD group", len(a) == 2
          and len(b) == 2 and eventually(
              lambda: group_members(a[0].pgrp) == []
              and group_members(b[0].pgrp) == []))
    holds["A"].finish()
    for f in files.values():
        rm_f(f)


def test_hold_kill_after(ctl, cl, tmp):
    """--kill-after: a CMD group that ignores SIGTERM gets SIGKILL after
    the grace, on a signal to procregctl and on a lost name alike."""
    for how in ("signal", "evict"):
        name = f"cli/stubborn-{how}"
        pidf = os.path.join(tmp, f"stubborn.{how}")
        h = ctl.spawn("hold", "--kill-after", "300", name, "--", "sh", "-c",
                      f"trap '' TERM; sleep 300 & echo $$ $! > {pidf}.new "
                      f"&& mv {pidf}.new {pidf}; wait")
        procs = pids_written(pidf)
        check(f"({how}) CMD runs: a shell and its sleep, both ignoring "
              "SIGTERM", len(procs) == 2 and not any(p.gone() for p in procs))
        if how == "signal":
            h.signal(signal.SIGTERM)
        else:
            ctl.run("evict", name)
        r = h.finish()
        if how == "signal":
            check("SIGTERM to hold: CMD ignores it and is SIGKILLed after "
                  "--kill-after (exit 137, not when sleep ends)", r.rc == 137)
        else:
            check("evicted: CMD ignores SIGTERM and is SIGKILLed after "
                  "--kill-after; hold exits 5", r.rc == 5)
        check(f"({how}) nothing of CMD is left", len(procs) == 2
              and all(p.gone() for p in procs))
        rm_f(pidf)
    r = ctl.run("hold", "--kill-after", "-1", "cli/x", "--", "true")
    check("--kill-after takes milliseconds from 0", r.rc == 2
          and "--kill-after" in r.err)
    r = ctl.run("hold", "--kill-after", "0", "cli/x", "--", "true")
    check("--kill-after 0 (SIGKILL at once) is accepted", r.rc == 0)
    r = ctl.run("hold", "--help")
    check("hold --help documents --kill-after, its default and exit 5",
          "--kill-after MS" in r.out and "default 5000" in r.out
          and "exits 5" in r.out)


def test_hold_leftovers(ctl, cl, tmp):
    """CMD ends, leaving a background process in its group: that gets
    SIGTERM too, and hold exits (releasing the name) after it is gone."""
    pidf = os.path.join(tmp, "leftover.pids")
    r = ctl.run("hold", "cli/leftover", "--", "sh", "-c",
                f"sleep 300 & echo $! > {pidf}.new && mv {pidf}.new {pidf}; "
                "exit 4")
    left = pids_written(pidf)
    check("hold exits with CMD's own status", r.rc == 4)
    check("what CMD left in its group is gone when hold exits",
          len(left) == 1 and left[0].gone())
    rm_f(pidf)


def test_serve_lost(ctl, cl, path, tmp):
    """serve: an evicted name stops serve (exit 5) and the CMD group
    answering a call."""
    s = ctl.spawn("serve", "cli/evserve", "--", "cat")
    wait_registered(cl, "cli/evserve")
    ctl.run("evict", "cli/evserve")
    r = s.finish()
    check("serve exits 5 when its name is evicted", r.rc == 5
          and "procregctl: lost cli/evserve (evicted)\n" in r.err)

    pidf = os.path.join(tmp, "serve.pids")
    s = ctl.spawn("serve", "cli/evserve", "--", "sh", "-c",
                  f"sleep 300 & echo $$ $! > {pidf}.new && mv {pidf}.new "
                  f"{pidf}; wait")
    wait_registered(cl, "cli/evserve")
    caller = Client(path)
    call = caller.send_request("call", "cli/evserve", "x", 20000)
    procs = pids_written(pidf)
    check("serve runs CMD in a process group of its own", len(procs) == 2
          and procs[0].pgrp == procs[1].pgrp != os.getpgrp()
          and not any(p.gone() for p in procs))
    ctl.run("evict", "cli/evserve")
    r = s.finish()
    check("evicted while CMD runs: serve stops CMD's group and exits 5",
          r.rc == 5 and "procregctl: lost cli/evserve (evicted): stopping "
          "CMD\n" in r.err and len(procs) == 2
          and all(p.gone() for p in procs))
    err, _ = caller.response(call)
    check("and its caller gets down", err is not None and err[0] == "down")
    caller.close()
    rm_f(pidf)


class Pty:
    """procregctl in the foreground of a terminal of its own (a pty),
    its session's leader, as under an interactive shell."""

    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.out = b""

    def expect(self, text, timeout=10.0):
        """Read the terminal until text appeared."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            self.out += data
        return True

    def write(self, data):
        os.write(self.fd, data)

    def wait(self, flags=0, timeout=10.0):
        """waitpid's status, or None when nothing happened in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, st = os.waitpid(self.pid, os.WNOHANG | flags)
            if pid == self.pid:
                return st
            time.sleep(0.01)
        return None

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        os.close(self.fd)


def test_hold_terminal(ctl):
    """At a terminal, CMD's group takes it: CMD reads it, ^C reaches CMD
    (hold exits 130), ^Z stops procregctl too and fg continues CMD."""
    sh = ["sh", "-c", "echo ready; read line; echo got $line"]
    t = Pty(ctl.argv(["hold", "cli/tty"] + ["--"] + sh))
    check("CMD runs", t.expect("ready"))
    t.write(b"hello\n")
    check("CMD reads the terminal (its group is the foreground)",
          t.expect("got hello"))
    st = t.wait()
    check("and hold exits 0", st is not None and os.WIFEXITED(st)
          and os.WEXITSTATUS(st) == 0)
    t.close()

    t = Pty(ctl.argv(["hold", "cli/tty", "--", "sh", "-c",
                      "echo ready; exec sleep 30"]))
    gc = guarded(t.pid)

    def comm():
        try:
            with open(f"/proc/{gc[1]}/comm") as f:
                return f.read().strip()
        except OSError:
            return None
    # A shell catches SIGINT until its exec: ^C only once sleep runs.
    check("CMD runs (sleep)", t.expect("ready") and gc is not None
          and eventually(lambda: comm() == "sleep"))
    t.write(b"\x03")
    st = t.wait()
    check("^C ends CMD: hold exits 130", st is not None
          and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 130)
    t.close()

    t = Pty(ctl.argv(["hold", "cli/tty", "--"] + sh))
    check("CMD runs (read)", t.expect("ready"))
    t.write(b"\x1a")
    st = t.wait(os.WUNTRACED)
    check("^Z stops CMD, and procregctl, so that its shell sees the job "
          "stop", st is not None and os.WIFSTOPPED(st))
    os.killpg(t.pid, signal.SIGCONT)	# fg: the shell continues the job
    t.write(b"again\n")
    check("fg: CMD continues, with the terminal", t.expect("got again"))
    st = t.wait()
    check("and hold exits 0 after it", st is not None
          and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0)
    t.close()


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-cli.")
    path = os.path.join(tmp, "s.sock")
    daemon, ok = start_daemon(path)
    ctl = Ctl(path)
    try:
        check("the daemon starts", ok)
        test_usage(ctl)
        test_help_suggest(ctl)
        test_json_errors(ctl, tmp)
        test_completion(ctl)
        test_unreachable(ctl, tmp)
        test_last_words(tmp)
        test_malformed_pushes(tmp)
        test_cluster_fake(tmp)
        test_ping_stats(ctl, path)
        a, b = Client(path), Client(path)
        test_whereis_list(ctl, a, b)
        test_cluster_without_etcd(ctl, a)
        test_list_terminal(ctl, a)
        test_send(ctl, a, path)
        a.close()
        b.close()
        cl = Client(path)
        test_hold(ctl, cl, path)
        test_monitor(ctl, cl, path)
        test_recv(ctl, cl)
        test_stdin_payloads(ctl, cl)
        test_evict(ctl, cl)
        test_hold_evicted(ctl, cl, tmp)
        test_hold_candidates_killed(ctl, cl, tmp)
        test_hold_kill_after(ctl, cl, tmp)
        test_hold_leftovers(ctl, cl, tmp)
        test_hold_terminal(ctl)
        test_call(ctl, path)
        test_send_monitor_conn(ctl, cl, path)
        test_serve(ctl, cl, path, tmp)
        test_serve_lost(ctl, cl, path, tmp)
        test_groups(ctl, cl, path)
        test_keys(ctl, path)
        test_usage_part2(ctl)
        test_await(ctl, cl)
        test_send_gen(ctl, path)
        test_queue(ctl, cl, path)
        test_hold_wait(ctl, cl, path)
        test_leader_demo(ctl, cl)
        test_watch(ctl, cl, path)
        test_values(ctl, path)
        test_watch_gap_overflow(tmp)
        daemon = test_daemon_restart(ctl, cl, daemon, path)
        daemon = test_reconnect(ctl, daemon, path)
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
