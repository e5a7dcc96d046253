#!/usr/bin/python3
"""Any msgpack-RPC client can use procreg: this one is a few lines of
Python with Debian's python3-msgpack, and no procreg code at all.

Starts procregd on a private socket, registers, looks up, sends, monitors,
and kills a client process holding a name with SIGKILL to see its names
vanish and its monitors fire.  Every wait is bounded; nothing is timed."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

DAEMON = os.environ.get("PROCREGD", os.path.join(os.path.dirname(__file__),
                                                 "..", "procregd"))


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0

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
        kind, msgid, error, result = self.recv()
        assert (kind, msgid) == (1, self.msgid), (kind, msgid)
        if error is not None:
            raise RuntimeError(error[0])
        return result


results = {"passed": 0, "failed": 0}


def eventually(pred, timeout=10.0):
    """Poll pred until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what)


def readme_snippet(path):
    """The README's Python snippet runs as printed, where XDG_RUNTIME_DIR
    is unset (root over ssh, containers) and PROCREG_SOCKET names the
    socket."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                          "README.md")
    with open(readme) as f:
        text = f.read()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["PROCREG_SOCKET"] = path
    r = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, timeout=20)
    lines = r.stdout.splitlines()
    check("the README's Python snippet runs without XDG_RUNTIME_DIR, on "
          "PROCREG_SOCKET (%s)" % (r.stderr.strip().splitlines()[-1:] or
                                   "no error"),
          r.returncode == 0 and len(lines) == 2
          and "'name': 'db'" in lines[0] and "'name': 'db'" in lines[1])


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-py.")
    path = os.path.join(tmp, "s.sock")
    daemon = subprocess.Popen([DAEMON, "-s", path], stderr=subprocess.DEVNULL)
    try:
        # The socket file appears at bind, before listen: wait until a
        # connection is accepted, not for a fixed while.
        def accepting():
            try:
                Client(path).sock.close()
                return True
            except OSError:
                return False
        check("the daemon accepts connections", eventually(accepting))

        readme_snippet(path)
        a, b = Client(path), Client(path)
        hello = a.call("hello", "python")
        check("hello names the server", hello["server"] == "procreg"
              and hello["protocol"] == 3)
        entry = a.call("register", "py/worker", {"port": 8080})
        check("register returns the entry", entry["name"] == "py/worker"
              and entry["value"] == {"port": 8080}
              and entry["pid"] == os.getpid())
        b_conn = b.call("hello")["conn"]
        check("whereis finds it", b.call("whereis", "py/worker")["conn"]
              == hello["conn"])
        check("send is accepted", b.call("send", "py/worker", [1, "two"]))
        check("the owner receives the message",
              a.recv() == [2, "message", ["py/worker", b_conn, [1, "two"]]])
        try:
            b.call("register", "py/worker")
            check("taken is an error", False)
        except RuntimeError as e:
            check("taken is an error", str(e) == "taken")

        # A separate process holds a name; SIGKILL it mid-life.
        child = subprocess.Popen([sys.executable, "-c", f"""
import socket, msgpack, sys, time
s = socket.socket(socket.AF_UNIX); s.connect({path!r})
s.sendall(msgpack.packb([0, 1, "register", ["py/victim"]]))
u = msgpack.Unpacker(raw=False); u.feed(s.recv(65536)); next(u)
print("ready", flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE)
        check("the child registered", child.stdout.readline() == b"ready\n")
        ref = b.call("monitor", "py/victim")
        child.send_signal(signal.SIGKILL)
        child.wait()
        check("its monitor fires disconnected",
              b.recv() == [2, "down", [ref, "py/victim", "disconnected"]])
        check("its name is gone", b.call("whereis", "py/victim") is None)
        a.sock.close()
        check("stats are back to one connection, no names",
              eventually(lambda: (lambda s: s["connections"] == 1
                                  and s["names"] == 0)(b.call("stats"))))
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=10)
        check("the daemon exits 0 on SIGTERM", code == 0)
        check("the socket file is removed", not os.path.exists(path))
        os.rmdir(tmp)
    print(f"python: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
