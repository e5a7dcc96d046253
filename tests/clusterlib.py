"""clusterlib: a small harness for procreg's multi-node (cluster) tests.

Real etcd (one member, or three for leader fail-over) on free loopback
ports with data directories in temporary directories; procregd nodes
pointed at it, each on a private socket, its log captured to a file; and
an independent msgpack-RPC client (plain socket + msgpack.Unpacker, no
procreg code).  Everything it starts runs in a process group of its own,
dies with the test process (PR_SET_PDEATHSIG) and is stopped and removed
by Harness.cleanup() (call it from a class cleanup) or, whatever happens,
at exit.  Every wait is bounded and polls; nothing sleeps for a fixed
while except the short poll interval.

Environment: PROCREGD (the daemon, default ../procregd from here), ETCD
(default: etcd on PATH), CLUSTER_LOG_LEVEL (the daemons', default debug).
Runs with Debian's /usr/bin/python3 (python3-msgpack)."""
import atexit
import base64
import collections
import ctypes
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.environ.get("PROCREGD", os.path.join(HERE, "..", "procregd"))
ETCD = os.environ.get("ETCD") or shutil.which("etcd") or "/usr/bin/etcd"
LOG_LEVEL = os.environ.get("CLUSTER_LOG_LEVEL", "debug")
WAIT = 10.0          # default bound of every wait

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_live = []           # every process started here, killed at exit
_dirs = []           # every temporary directory, removed at exit


def _child_setup():
    # start_new_session made the child a process-group leader; this makes
    # it die with the test process even when that is killed with SIGKILL.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv, log_path, env=None):
    """argv in a new session, stdout and stderr to log_path (appended)."""
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env,
                                start_new_session=True,
                                preexec_fn=_child_setup)
    finally:
        log.close()
    _live.append(proc)
    return proc


def kill_group(proc, sig=signal.SIGKILL):
    """sig to proc's process group (it leads one); no error if gone."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_proc(proc, timeout=5.0):
    """SIGCONT (it may be stopped) and SIGTERM to its group, SIGKILL after
    timeout; its exit status, or "killed" when it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    kill_group(proc, signal.SIGCONT)
    kill_group(proc, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, signal.SIGKILL)
        proc.wait()
        return "killed"


@atexit.register
def _reap_everything():
    for proc in _live:
        if proc.poll() is None:
            kill_group(proc, signal.SIGCONT)
            kill_group(proc, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


def mkdtemp(prefix):
    """A temporary directory removed at exit (or by the caller before)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _dirs.append(d)
    return d


def free_port():
    """A loopback TCP port free right now (bind port 0)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def eventually(pred, timeout=WAIT, interval=0.02):
    """Polls pred until it returns a true value or timeout passes; returns
    its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(text.splitlines()[-lines:])


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode(s)


def prefix_end(p):
    """etcd's range end for every key starting with p."""
    b = bytearray(p.encode() if isinstance(p, str) else p)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\0"
    b[-1] += 1
    return bytes(b)


# --------------------------------------------------------------- the client

def connect_unix(path, wait=0.0):
    """A connected AF_UNIX socket; retries for up to wait seconds while
    the socket is missing or refuses (a failed connect uses up no
    connection id of the daemon)."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class RPCError(Exception):
    """An error answer: code (e.g. "taken") and the daemon's message."""

    def __init__(self, code, message="", method=None):
        super().__init__("%s: %s%s" % (code, message,
                                       " (%s)" % method if method else ""))
        self.code = code
        self.message = message
        self.method = method


class Client:
    """A synchronous msgpack-RPC client of one procregd socket.

    request(method, params) answers the result or raises RPCError (with
    .code); TimeoutError when no answer comes in time, EOFError when the
    daemon closes.  Notifications arriving meanwhile are kept in order in
    self.notes as (method, params); wait_note/wait_down take them out."""

    def __init__(self, path, timeout=WAIT, hello=None, wait=0.0):
        """wait: seconds to retry the connect while the socket is not
        there yet (a daemon starting)."""
        self.path = path
        self.timeout = timeout
        self.sock = connect_unix(path, wait)
        self.sock.settimeout(timeout)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.msgid = 0
        self.notes = collections.deque()
        self.conn = None
        if hello is not None:
            self.conn = self.request("hello", [hello])["conn"]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, deadline):
        """One message, or TimeoutError at deadline, EOFError at close."""
        while True:
            for obj in self.unpacker:
                return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("nothing from the daemon in time")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                raise TimeoutError("nothing from the daemon in time")
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the daemon closed the connection")
            self.unpacker.feed(data)

    def send_request(self, method, params=()):
        """Sends without waiting; the msgid to pass to answer()."""
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method,
                                         list(params)]))
        return self.msgid

    def answer(self, msgid, method=None, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self._read(deadline)
            if msg[0] == 2:
                self.notes.append((msg[1], msg[2]))
                continue
            if msg[0] != 1 or msg[1] != msgid:
                raise AssertionError("unexpected message %r waiting for "
                                     "the answer to %d" % (msg, msgid))
            if msg[2] is not None:
                err = msg[2]
                if isinstance(err, (list, tuple)) and err:
                    raise RPCError(err[0], err[1] if len(err) > 1 else "",
                                   method)
                raise RPCError(repr(err), "", method)
            return msg[3]

    def request(self, method, params=(), timeout=None):
        return self.answer(self.send_request(method, params), method,
                           timeout)

    def call(self, method, *params, timeout=None):
        return self.request(method, params, timeout)

    def error_of(self, method, *params, timeout=None):
        """The error code of a request expected to fail; AssertionError
        (with the result) if it succeeds."""
        try:
            result = self.request(method, params, timeout)
        except RPCError as e:
            return e.code
        raise AssertionError("%s%r succeeded: %r" % (method, params, result))

    def pump(self, timeout=0.0):
        """Reads whatever arrives within timeout into self.notes."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                msg = self._read(deadline)
                if msg[0] == 2:
                    self.notes.append((msg[1], msg[2]))
                else:
                    raise AssertionError("unexpected response %r" % (msg,))
        except TimeoutError:
            pass

    def wait_note(self, pred, timeout=WAIT):
        """The first notification (method, params) for which
        pred(method, params) holds, taken out of self.notes; None when
        none comes within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for note in list(self.notes):
                if pred(*note):
                    self.notes.remove(note)
                    return note
            try:
                msg = self._read(deadline)
            except TimeoutError:
                return None
            if msg[0] == 2:
                self.notes.append((msg[1], msg[2]))
            else:
                raise AssertionError("unexpected response %r" % (msg,))

    def wait_down(self, ref, timeout=WAIT):
        """The reason of the down for monitor ref, or None in time."""
        note = self.wait_note(lambda m, p: m == "down" and p[0] == ref,
                              timeout)
        return None if note is None else note[1][2]

    def wait_lost(self, name, timeout=WAIT):
        """The reason of the lost notice for name, or None in time."""
        note = self.wait_note(lambda m, p: m == "lost" and p[0] == name,
                              timeout)
        return None if note is None else note[1][1]


def reg_cluster(client, name, value=None, timeout=None):
    return client.request("register", [name, value, {"scope": "cluster"}],
                          timeout)


def whereis(client, name, **opts):
    return client.request("whereis", [name, opts] if opts else [name])


class RawClient:
    """A connection that sends bytes as they are and reads objects one at
    a time (str fields must be UTF-8: the unpacker raises otherwise), as
    tests/check_spec.c replays PROTOCOL.md's examples.  It connects as
    soon as the socket accepts (retrying while there is none): a failed
    connect uses up no connection id, so the daemon's first accepted
    connection is this one when nothing else connected before."""

    def __init__(self, path, timeout=WAIT, raw=False):
        """raw: str as bytes (to look at what is not UTF-8)."""
        self.sock = connect_unix(path, timeout)
        self.unpacker = msgpack.Unpacker(raw=raw, strict_map_key=False)

    def send(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=WAIT):
        """The next object; TimeoutError, or EOFError at close."""
        deadline = time.monotonic() + timeout
        while True:
            for obj in self.unpacker:
                return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("nothing from the daemon in time")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                raise TimeoutError("nothing from the daemon in time")
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the daemon closed the connection")
            self.unpacker.feed(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------- PROTOCOL.md's examples

# SPEC overrides it, as for tests/check_spec.c.
SPEC = os.environ.get("SPEC") or os.path.join(HERE, "..", "proto",
                                              "PROTOCOL.md")
# tests/check_spec.c's: values that differ from run to run compare by type.
SPEC_LOOSE = frozenset((
    "pid", "uid", "gid", "since", "boot", "version", "uptime_ms",
    "requests", "messages", "downs", "notifications_ignored",
    "connections_total", "replies_late"))


class SpecLine:
    """One line of an example: client (a letter), op (">", "<" or
    "close"), data (the bytes; None for close), lineno, text."""

    def __init__(self, lineno, text, client, op, data):
        self.lineno, self.text = lineno, text
        self.client, self.op, self.data = client, op, data


def spec_blocks(kind, path=SPEC):
    """The ```KIND blocks of PROTOCOL.md (exactly that info string), each
    as (line of the opening fence, [SpecLine, ...]); the rules of
    tests/check_spec.c: "X> HEX" sends, "X< HEX" receives, "X close"."""
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("```"):
                if cur is None and line[3:].strip() == kind:
                    cur = (lineno, [])
                elif cur is not None:
                    blocks.append(cur)
                    cur = None
                continue
            if cur is None or not line or not "A" <= line[0] <= "Z":
                continue
            if line[1:] == " close":
                cur[1].append(SpecLine(lineno, line, line[0], "close",
                                       None))
            elif line[1:3] in ("> ", "< "):
                data = bytes.fromhex(line[3:].replace(" ", ""))
                cur[1].append(SpecLine(lineno, line, line[0], line[1],
                                       data))
    return blocks


def _spec_kind(x):
    if x is None:
        return "nil"
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "uint" if x >= 0 else "int"
    for t, k in ((float, "float"), (str, "str"), (bytes, "bin"),
                 ((list, tuple), "array"), (dict, "map"),
                 (msgpack.ExtType, "ext")):
        if isinstance(x, t):
            return k
    return type(x).__name__


def spec_same(want, got, loose=SPEC_LOOSE):
    """check_spec.c's same(): deep equality, map keys in order, except
    that the values of loose keys (at any depth) compare by type."""
    if _spec_kind(want) != _spec_kind(got):
        return False
    if isinstance(want, (list, tuple)):
        return len(want) == len(got) and all(
            spec_same(a, b, loose) for a, b in zip(want, got))
    if isinstance(want, dict):
        if len(want) != len(got):
            return False
        for (kw, vw), (kg, vg) in zip(want.items(), got.items()):
            if not spec_same(kw, kg, loose):
                return False
            if isinstance(kw, str) and kw in loose:
                if _spec_kind(vw) != _spec_kind(vg):
                    return False
            elif not spec_same(vw, vg, loose):
                return False
        return True
    return want == got


def _spec_error_pair(o):
    if not isinstance(o, list):
        return None
    if len(o) == 4 and o[0] == 1 and isinstance(o[2], list) and \
            len(o[2]) == 2:
        return o[2]
    if len(o) == 3 and o[0] == 2 and o[1] == "error" and \
            isinstance(o[2], list) and len(o[2]) == 2:
        return o[2]
    return None


def spec_same_message(want, got, loose=SPEC_LOOSE):
    """check_spec.c's same_message(): an error's message text compares
    by type only."""
    ew, eg = _spec_error_pair(want), _spec_error_pair(got)
    if ew is None or eg is None:
        return spec_same(want, got, loose)
    if _spec_kind(ew[1]) != _spec_kind(eg[1]):
        return False
    saved = ew[1]
    ew[1] = eg[1]
    try:
        return spec_same(want, got, loose)
    finally:
        ew[1] = saved


# ------------------------------------------------------------------- etcd

class EtcdMember:
    """One etcd member; its data directory and ports stay the same across
    restart() (same member, same data)."""

    def __init__(self, base, name):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "etcd.log")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.client_port
        self.peer_url = "http://127.0.0.1:%d" % self.peer_port
        self.proc = None
        self.initial_cluster = None
        self.token = None

    def start(self, fast_election=False):
        argv = [ETCD, "--name", self.name, "--data-dir", self.data,
                "--listen-client-urls", self.url,
                "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new"]
        if fast_election:
            argv += ["--heartbeat-interval", "50",
                     "--election-timeout", "500"]
        self.argv = argv
        with open(self.log, "ab") as f:
            f.write(b"=== start %s\n" % " ".join(argv).encode())
        self.proc = spawn(argv, self.log)

    def restart(self):
        """The same command line again: same data, same ports."""
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as f:
            f.write(b"=== restart\n")
        self.proc = spawn(self.argv, self.log)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        kill_group(self.proc, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(WAIT)

    def pause(self):
        kill_group(self.proc, signal.SIGSTOP)

    def resume(self):
        kill_group(self.proc, signal.SIGCONT)

    def stop(self):
        if self.proc is not None:
            return stop_proc(self.proc)
        return None

    def api(self, path, body, timeout=2.0):
        """POST /v3/... on this member's JSON gateway; the decoded answer
        (raises OSError, http.client errors, or ValueError on non-200)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port,
                                          timeout=timeout)
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
        """True when it serves a (linearizable) read."""
        try:
            self.api("/v3/kv/range", {"key": b64("procreg-test-probe")})
            return True
        except (OSError, ValueError, http.client.HTTPException):
            return False

    def status(self):
        return self.api("/v3/maintenance/status", {})

    # Raw keys and values (bytes or str), as a foreign writer would put
    # them: no lease unless given.
    def put(self, key, value, lease=None):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.api("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key, prefix=False):
        """Deletes key (every key under it with prefix); the revision."""
        body = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        return int(self.api("/v3/kv/deleterange", body)["header"]
                   ["revision"])

    def txn(self, puts=(), deletes=()):
        """One unconditional transaction: puts ((key, value), ...) and
        deletes (key, ...); the revision it made."""
        ops = [{"request_put": {"key": b64(k), "value": b64(v)}}
               for k, v in puts]
        ops += [{"request_delete_range": {"key": b64(k)}} for k in deletes]
        return int(self.api("/v3/kv/txn", {"success": ops})["header"]
                   ["revision"])

    def revision(self):
        """etcd's current revision (of the whole store)."""
        return int(self.api("/v3/kv/range", {
            "key": b64("procreg-test-probe")})["header"]["revision"])

    def history(self, prefix, start_rev, until_rev=None, idle=0.5,
                timeout=WAIT):
        """What etcd's own watch reports under prefix from start_rev on:
        a list of {"type": "PUT"|"DELETE", "key": bytes, "value": bytes,
        "create_revision", "mod_revision", "version": int}, in revision
        order.  Reads until an event at until_rev or later has come (the
        rest of its message included), else until idle seconds pass
        without data; at most timeout seconds."""
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port,
                                          timeout=idle)
        events = []
        deadline = time.monotonic() + timeout
        try:
            conn.request("POST", "/v3/watch", json.dumps({
                "create_request": {
                    "key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                    "start_revision": str(start_rev)}}),
                {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise ValueError("watch: HTTP %d" % resp.status)
            buf = b""
            while time.monotonic() < deadline:
                try:
                    data = resp.read1(65536)
                except socket.timeout:
                    break
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    res = json.loads(line).get("result", {})
                    for ev in res.get("events", []):
                        kv = ev["kv"]
                        events.append({
                            "type": ev.get("type", "PUT"),
                            "key": unb64(kv["key"]),
                            "value": unb64(kv.get("value", "")),
                            "create_revision": int(kv.get(
                                "create_revision", 0)),
                            "mod_revision": int(kv["mod_revision"]),
                            "version": int(kv.get("version", 0))})
                if until_rev is not None and events and \
                        events[-1]["mod_revision"] >= until_rev:
                    break
        finally:
            conn.close()
        return events

    def log_tail(self, lines=15):
        return tail(self.log, lines)


class EtcdCluster:
    """n etcd members on loopback (n=1: a single member).  .url is the
    comma-separated client URLs, as procregd's --etcd takes them."""

    def __init__(self, n=1, fast_election=None):
        self.n = n
        self.fast = (n > 1) if fast_election is None else fast_election
        self.base = None
        self.members = []

    @property
    def url(self):
        return ",".join(m.url for m in self.members)

    def start(self, timeout=30.0, attempts=3):
        """Starts every member and waits until each answers a read; tries
        again with fresh ports (one may have been taken meanwhile)."""
        last = ""
        for _ in range(attempts):
            shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
            # fsync on tmpfs costs nothing: elections and commits stay
            # quick on a loaded machine.
            self.base = tempfile.mkdtemp(prefix="procreg-etcd.", dir=shm)
            _dirs.append(self.base)
            self.members = [EtcdMember(self.base, "e%d" % (i + 1))
                            for i in range(self.n)]
            initial = ",".join("%s=%s" % (m.name, m.peer_url)
                               for m in self.members)
            token = "procreg-" + uuid.uuid4().hex[:8]
            for m in self.members:
                m.initial_cluster, m.token = initial, token
                m.start(self.fast)
            ok = eventually(lambda: all(m.answers() for m in self.members)
                            or any(not m.alive() for m in self.members),
                            timeout, 0.1)
            if ok and all(m.alive() for m in self.members):
                return self
            last = "\n".join("--- %s (%s):\n%s" % (m.name, m.url,
                                                   m.log_tail())
                             for m in self.members)
            self.stop()
        raise AssertionError("etcd (%d members) did not start:\n%s"
                             % (self.n, last))

    def stop(self):
        for m in self.members:
            m.stop()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def leader(self, timeout=10.0):
        """The member that leads right now (asked of every live member,
        until one that answers names a leader among them)."""
        def find():
            for m in self.members:
                if not m.alive():
                    continue
                try:
                    st = m.status()
                except (OSError, ValueError, http.client.HTTPException):
                    continue
                lead = st.get("leader")
                for cand in self.members:
                    if cand.alive():
                        try:
                            cst = cand.status()
                        except (OSError, ValueError,
                                http.client.HTTPException):
                            continue
                        if cst["header"]["member_id"] == lead:
                            return cand
            return None
        return eventually(find, timeout, 0.05)

    def any_live(self):
        return next(m for m in self.members if m.alive())

    def put(self, key, value, lease=None):
        return self.any_live().put(key, value, lease)

    def delete(self, key, prefix=False):
        return self.any_live().delete(key, prefix)

    def txn(self, puts=(), deletes=()):
        return self.any_live().txn(puts, deletes)

    def revision(self):
        return self.any_live().revision()

    def history(self, prefix, start_rev, until_rev=None, **kw):
        return self.any_live().history(prefix, start_rev, until_rev, **kw)

    def keys(self, prefix):
        """{key: kv} of every key under prefix (a read on a live member)."""
        ans = self.any_live().api("/v3/kv/range", {
            "key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return {unb64(kv["key"]).decode("utf-8", "replace"): kv
                for kv in ans.get("kvs", [])}

    def log_tails(self, lines=15):
        return "\n".join("--- etcd %s %s (%s):\n%s"
                         % (m.name, m.url, "running" if m.alive() else
                            "exited %r" % (m.proc.returncode if m.proc
                                           else None),
                            m.log_tail(lines))
                         for m in self.members)


# --------------------------------------------------------------- the nodes

class Node:
    """One procregd on a private socket, a cluster node when etcd is given.
    """

    def __init__(self, tmp, name, etcd_url=None, prefix=None, ttl=2,
                 etcd_timeout=None, extra=()):
        self.name = name
        self.dir = os.path.join(tmp, name)
        i = 1
        while os.path.exists(self.dir):     # a second daemon of one name
            i += 1
            self.dir = os.path.join(tmp, "%s.%d" % (name, i))
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "s.sock")
        self.log = os.path.join(self.dir, "procregd.log")
        self.argv = [DAEMON, "-s", self.path, "--log-level", LOG_LEVEL]
        if etcd_url is not None:
            self.argv += ["--etcd", etcd_url, "--node", name,
                          "--lease-ttl", str(ttl)]
            if prefix is not None:
                self.argv += ["--cluster-prefix", prefix]
            if etcd_timeout is not None:
                self.argv += ["--etcd-timeout", str(etcd_timeout)]
        self.argv += list(extra)
        self.ttl = ttl
        self.proc = None
        self._poller = None

    def start(self):
        with open(self.log, "ab") as f:
            f.write(b"=== start %s\n" % " ".join(self.argv).encode())
        self.proc = spawn(self.argv, self.log)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _exited(self):
        return "%s exited (status %r) at start:\n%s" % (
            self.name, self.proc.returncode, self.log_tail())

    def wait_accepting(self, timeout=WAIT):
        def accepting():
            if not self.alive():
                return "exited"
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.path)
                return "yes"
            except OSError:
                return None
            finally:
                s.close()
        got = eventually(accepting, timeout)
        if got != "yes":
            raise AssertionError(self._exited() if got == "exited" else
                                 "%s does not accept connections on %s "
                                 "after %gs:\n%s" % (self.name, self.path,
                                                     timeout,
                                                     self.log_tail()))

    def state(self):
        """stats["cluster"]["state"], through one kept connection."""
        if self._poller is None:
            self._poller = Client(self.path, 3.0)
        try:
            return self._poller.request("stats")["cluster"]["state"]
        except (OSError, EOFError, TimeoutError):
            self._poller.close()
            self._poller = None
            raise

    def safe_state(self):
        """state(), or a "(...)" string saying why there is none."""
        try:
            return self.state()
        except (KeyError, TypeError) as e:
            return "(stats without cluster.state: %r)" % e
        except RPCError as e:
            return "(stats failed: %s)" % e
        except (OSError, EOFError, TimeoutError) as e:
            return "(no answer to stats: %r)" % e

    def wait_state(self, pred, timeout=WAIT):
        """Polls safe_state() until pred(state); the last state seen."""
        seen = [None]

        def f():
            seen[0] = self.safe_state()
            return pred(seen[0])
        eventually(f, timeout, 0.05)
        self.close_poller()
        return seen[0]

    def wait_up(self, timeout=WAIT):
        """Until stats["cluster"]["state"] == "up"; AssertionError with the
        last state seen and the log's tail otherwise."""
        self.wait_accepting(timeout)
        seen = ["nothing"]

        def up():
            if not self.alive():
                return "exited"
            try:
                seen[0] = repr(self.state())
            except (KeyError, TypeError) as e:
                seen[0] = "stats without cluster.state (%r)" % e
                return None
            except RPCError as e:
                seen[0] = "stats failed: %s" % e
                return None
            except (OSError, EOFError, TimeoutError) as e:
                seen[0] = "no answer to stats: %r" % e
                return None
            return "up" if seen[0] == "'up'" else None
        got = eventually(up, timeout, 0.05)
        self.close_poller()
        if got == "exited":
            raise AssertionError(self._exited())
        if got != "up":
            raise AssertionError("%s not up in the cluster after %gs (last "
                                 "state: %s):\n%s" % (self.name, timeout,
                                                      seen[0],
                                                      self.log_tail()))
        return self

    def close_poller(self):
        if self._poller is not None:
            self._poller.close()
            self._poller = None

    def client(self, timeout=WAIT, hello="clustertest"):
        return Client(self.path, timeout, hello)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.proc.wait(WAIT)

    def pause(self):
        self.signal(signal.SIGSTOP)

    def resume(self):
        self.signal(signal.SIGCONT)

    def stop(self):
        """SIGTERM (after SIGCONT); its exit status."""
        self.close_poller()
        if self.proc is None:
            return None
        return stop_proc(self.proc)

    def log_tail(self, lines=30):
        return tail(self.log, lines)


class Harness:
    """The processes of one test class: etcd clusters and nodes, in one
    temporary directory; cleanup() stops them all and removes it."""

    def __init__(self, label="cluster", shared_etcd=None):
        self.tmp = mkdtemp("procreg-%s." % label)
        self.etcds = []
        self.nodes = []
        # An etcd that another harness owns: in diag(), not stopped here.
        self.shared = [shared_etcd] if shared_etcd is not None else []

    @staticmethod
    def new_prefix():
        return "/test-%s/" % uuid.uuid4().hex[:10]

    def etcd(self, n=1, **kw):
        e = EtcdCluster(n, **kw)
        self.etcds.append(e)
        return e.start()

    def node(self, name, etcd=None, prefix=None, ttl=2, **kw):
        n = Node(self.tmp, name, etcd.url if hasattr(etcd, "url") else etcd,
                 prefix, ttl, **kw)
        self.nodes.append(n)
        return n.start()

    def nodes_up(self, names, etcd, prefix=None, ttl=2, timeout=WAIT,
                 **kw):
        """Starts every node at once, then waits until each is up; a list
        in the order of names."""
        prefix = prefix or self.new_prefix()
        started = [self.node(name, etcd, prefix, ttl, **kw)
                   for name in names]
        for n in started:
            n.wait_up(timeout)
        return started

    def diag(self, lines=25):
        """Every node's and etcd member's log tail, for a failure report."""
        out = []
        for n in self.nodes:
            st = ("running" if n.alive() else "exited %r"
                  % (n.proc.returncode if n.proc else None))
            out.append("--- node %s (%s, %s):\n%s"
                       % (n.name, st, n.log, n.log_tail(lines)))
        for e in self.etcds + self.shared:
            out.append(e.log_tails(lines // 2))
        return "\n".join(out)

    def cleanup(self):
        """Stops every node (SIGTERM) and etcd; {node: exit status} of the
        nodes that were still running."""
        codes = {}
        for n in self.nodes:
            running = n.alive()
            code = n.stop()
            if running:
                codes[n.name] = code
        for e in self.etcds:
            e.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return codes

# ------------------------------------------------------------ a fake etcd

class FakeEtcd:
    """A loopback HTTP server in threads between procregd and a real etcd
    (upstream): while armed, it answers the requests to the paths in
    `only` (None: every path) with one kind of bad answer; everything
    else it relays to upstream (a watch as a stream).  Kinds:

      garbage          200 with a body that is not JSON
      wrong_types      200 with JSON whose fields have the wrong types
      http_error       503 with etcd's "no leader" error body
      huge_length      a Content-Length of 1 TiB, a few bytes, then silence
      huge_chunk       chunked, a chunk size of 2^44, a few bytes, silence
      truncated_chunk  chunked, half a chunk, then the connection closes
      oversize         200 with a well-formed 5 MiB JSON body
      deep_json        200 with JSON nested 100,000 deep
      slowloris        the status line one byte every 0.2 s, never ending
      created_truncated  (watches) etcd's real first message (created),
                       then half a chunk, then close
      created_wrong_types  (watches) the same, then events of wrong types

    Arming while a relayed watch streams ends that stream (the daemon
    watches again, into the bad answers).  .requests counts the requests
    per path, .bad the bad answers given."""

    KINDS = ("garbage", "wrong_types", "http_error", "huge_length",
             "huge_chunk", "truncated_chunk", "oversize", "deep_json",
             "slowloris", "created_truncated", "created_wrong_types")
    WRONG = json.dumps({
        "header": "nope", "ID": {"a": 1}, "TTL": [1], "kvs": "none",
        "count": {}, "more": "yes", "succeeded": "true", "responses": 5,
        "revision": [], "deleted": [], "created": "yes",
        "result": {"created": "yes", "events": "none", "header": 7,
                   "watch_id": {}}}).encode()

    def __init__(self, kind, upstream, only=None, armed=True):
        import threading
        assert kind in self.KINDS, kind
        self.kind = kind
        self.upstream = upstream          # an EtcdMember
        self.only = tuple(only) if only else None
        self.armed = threading.Event()
        if armed:
            self.armed.set()
        self.requests = collections.Counter()
        self.bad = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.errors = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def arm(self):
        self.armed.set()

    def disarm(self):
        self.armed.clear()

    def drop(self):
        """Shuts down every connection open now (the bad answers left
        hanging among them): the daemon sees them closed at once instead
        of at its etcd timeout."""
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def total(self):
        with self.lock:
            return sum(self.requests.values())

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self):
        import threading
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _read_request(self, conn, buf):
        """(path, body, rest of buf) or None at EOF or stop."""
        conn.settimeout(0.2)
        while b"\r\n\r\n" not in buf:
            if self.stopping.is_set():
                return None
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return None
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1] if len(parts) > 1 else "?"
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        while len(buf) < length:
            if self.stopping.is_set():
                return None
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return None
            buf += data
        return path, buf[:length], buf[length:]

    @staticmethod
    def _head(status="200 OK", extra=""):
        return ("HTTP/1.1 %s\r\nContent-Type: application/json\r\n%s\r\n"
                % (status, extra)).encode()

    def _body(self, conn, body, status="200 OK"):
        conn.sendall(self._head(status, "Content-Length: %d\r\n"
                                % len(body)) + body)

    def _serve(self, conn):
        buf = b""
        try:
            while not self.stopping.is_set():
                req = self._read_request(conn, buf)
                if req is None:
                    break
                path, body, buf = req
                with self.lock:
                    self.requests[path] += 1
                if self.armed.is_set() and (self.only is None
                                            or path in self.only):
                    with self.lock:
                        self.bad += 1
                    keep = self._bad(conn, path, body)
                else:
                    keep = self._relay(conn, path, body)
                if not keep:
                    break
        except OSError as e:
            # The daemon closing its end is its right; note it only.
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _bad(self, conn, path, body):
        """One bad answer; False to close the connection after it."""
        k = self.kind
        if k == "garbage":
            self._body(conn, b"\x00\xffthis is not JSON {[")
        elif k == "wrong_types":
            self._body(conn, self.WRONG)
        elif k == "http_error":
            self._body(conn, b'{"error":"etcdserver: no leader","message":'
                       b'"etcdserver: no leader","code":14}',
                       "503 Service Unavailable")
        elif k == "huge_length":
            conn.sendall(self._head(extra="Content-Length: 1099511627776\r\n")
                         + b'{"header":{' + b" " * 1000)
            self.stopping.wait(30)
            return False
        elif k == "huge_chunk":
            conn.sendall(self._head(extra="Transfer-Encoding: chunked\r\n")
                         + b"100000000000\r\n" + b'{"result":' + b" " * 1000)
            self.stopping.wait(30)
            return False
        elif k == "truncated_chunk":
            conn.sendall(self._head(extra="Transfer-Encoding: chunked\r\n")
                         + b'400\r\n{"result":{"header":{"revision":"1')
            return False
        elif k == "oversize":
            self._body(conn, b'{"header":{"revision":"1"},"pad":"'
                       + b"a" * (5 << 20) + b'"}')
        elif k == "deep_json":
            self._body(conn, b'{"a":' * 100000 + b"1" + b"}" * 100000)
        elif k == "slowloris":
            for ch in b"HTTP/1.1 200 OK\r\nContent-Type: application/json":
                if self.stopping.wait(0.2):
                    break
                conn.sendall(bytes([ch]))
            self.stopping.wait(30)
            return False
        elif k in ("created_truncated", "created_wrong_types"):
            conn.sendall(self._first_watch_chunk(path, body))
            if k == "created_truncated":
                conn.sendall(b'400\r\n{"result":{"header":{"revision":"')
                return False
            bad = json.dumps({"result": {
                "header": {"revision": "99999999"},
                "events": [{"type": 7, "kv": {"key": 5,
                                              "create_revision": "abc",
                                              "mod_revision": [],
                                              "value": "!!notbase64"}},
                           {"type": "DELETE", "kv": "x"}, 3]}}).encode()
            conn.sendall(b"%x\r\n%s\r\n" % (len(bad) + 1, bad + b"\n"))
            self.stopping.wait(1.0)
            return False
        return True

    def _relay(self, conn, path, body):
        if path == "/v3/watch":
            self._relay_stream(conn, path, body)
            return False
        up = http.client.HTTPConnection("127.0.0.1",
                                        self.upstream.client_port,
                                        timeout=10)
        try:
            up.request("POST", path, body,
                       {"Content-Type": "application/json"})
            resp = up.getresponse()
            data = resp.read()
            status = "%d %s" % (resp.status, resp.reason)
        finally:
            up.close()
        self._body(conn, data, status)
        return True

    def _request_bytes(self, path, body):
        return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body))
                + body)

    def _relay_stream(self, conn, path, body):
        """The watch, byte for byte both ways, until either side closes,
        the fake stops, or it is armed for this path."""
        up = socket.create_connection(("127.0.0.1",
                                       self.upstream.client_port), 5)
        try:
            up.sendall(self._request_bytes(path, body))
            while not self.stopping.is_set():
                if self.armed.is_set() and (self.only is None
                                            or path in self.only):
                    return
                ready, _, _ = select.select([up, conn], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (conn if s is up else up).sendall(data)
        finally:
            up.close()

    def _first_watch_chunk(self, path, body):
        """The real etcd's answer to a watch: its headers and first chunk
        (the created message), as bytes to relay."""
        up = socket.create_connection(("127.0.0.1",
                                       self.upstream.client_port), 5)
        try:
            up.sendall(self._request_bytes(path, body))
            buf = b""
            while True:
                if b"\r\n\r\n" in buf:
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    if b"\r\n" in rest:
                        size = int(rest.split(b"\r\n", 1)[0], 16)
                        need = rest.index(b"\r\n") + 2 + size + 2
                        if len(rest) >= need:
                            return head + b"\r\n\r\n" + rest[:need]
                data = up.recv(65536)
                if not data:
                    raise OSError("etcd closed the watch")
                buf += data
        finally:
            up.close()
