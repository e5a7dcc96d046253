#!/usr/bin/python3
"""The chat example (src/examples/chat.c) end to end.

Starts procregd on a private socket and `chat supervise lobby`; two users
join the room's group, talk (publishes with echo false: no echo to the
author), a third joins and gets the history (a call to the room,
get_messages); the room process is killed with SIGKILL, the supervisor
restarts it under the same name, and the users see its down, find it again
and talk on.  The registry is watched through a plain Python msgpack-RPC
client, which also listens to the group and calls the room.  Every wait is
bounded; nothing is timed.

The README's cluster walk-through (three nodes and an etcd on one machine)
runs here too, as printed (readme_cluster): it needs etcd, and times one
thing, the contract's bound on a crashed node's names."""
import glob
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.environ.get("PROCREGD", os.path.join(HERE, "..", "procregd"))
CTL = os.environ.get("PROCREGCTL", os.path.join(HERE, "..", "procregctl"))
CHAT = os.environ.get("CHAT", os.path.join(HERE, "..", "src", "examples",
                                           "chat"))
WAIT = 10.0

results = {"passed": 0, "failed": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what, flush=True)
    return cond


def eventually(pred, timeout=WAIT):
    """Poll pred until it returns something true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


class Client:
    """A minimal msgpack-RPC client of procregd."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.pushes = []

    def request(self, method, *params):
        """(error, result) of one request; pushes meanwhile are kept."""
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method,
                                         list(params)]))
        while True:
            for obj in self.unpacker:
                if obj[0] == 2:
                    self.pushes.append(obj)
                elif obj[0] == 1 and obj[1] == self.msgid:
                    return obj[2], obj[3]
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.unpacker.feed(data)

    def call(self, method, *params):
        error, result = self.request(method, *params)
        if error is not None:
            raise RuntimeError(error[0])
        return result

    def close(self):
        self.sock.close()

    def push(self):
        """The next notification (bounded by the socket timeout)."""
        while not self.pushes:
            for obj in self.unpacker:
                if obj[0] == 2:
                    self.pushes.append(obj)
            if not self.pushes:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError
                self.unpacker.feed(data)
        return self.pushes.pop(0)


class User:
    """A `chat join` process: lines in through stdin, lines out read with
    bounded select() waits."""

    def __init__(self, sock, room, name, logdir):
        self.name = name
        self.err = open(os.path.join(logdir, name + ".err"), "w+")
        self.proc = subprocess.Popen([CHAT, "-s", sock, "join", room, name],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err)
        self.buf = b""
        self.lines = []         # every line printed so far
        self.seen = 0           # lines already matched by wait_for

    def say(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, needle, timeout=WAIT):
        """The first line not matched before that contains needle."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            for i in range(self.seen, len(self.lines)):
                if needle in self.lines[i]:
                    self.seen = i + 1
                    return self.lines[i]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                return None
            self.buf += data
            *done, self.buf = self.buf.split(b"\n")
            self.lines += [d.decode("utf-8", "replace") for d in done]

    def close(self):
        """Close stdin (EOF: leave the room) and return the exit code."""
        try:
            self.proc.stdin.close()
            return self.proc.wait(timeout=WAIT)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            return None

    def dump(self):
        self.err.seek(0)
        print(f"--- {self.name} stdout:\n" + "\n".join(self.lines) +
              f"\n--- {self.name} stderr:\n" + self.err.read())


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def scenario(sock, tmp, run):
    """The whole story; run collects the processes to clean up."""
    def connect():
        try:
            return Client(sock)
        except OSError:
            return None
    reg = eventually(connect)
    if not check("procregd answers", reg is not None):
        return
    supervisor = run["supervisor"] = subprocess.Popen(
        [CHAT, "-s", sock, "supervise", "lobby"], stderr=run["sup_err"])
    room = eventually(lambda: reg.call("whereis", "room/lobby"))
    if not check("the supervised room registers room/lobby",
                 room is not None):
        return
    check("its value names the room",
          isinstance(room["value"], dict)
          and room["value"].get("room") == "lobby"
          and isinstance(room["value"].get("started"), int))

    alice = User(sock, "lobby", "alice", tmp)
    bob = User(sock, "lobby", "bob", tmp)
    run["users"] += [alice, bob]
    joined = f"*** joined room lobby (conn {room['conn']})"
    check("alice joins", alice.wait_for("*** joined") == joined)
    check("bob joins", bob.wait_for("*** joined") == joined)
    check("both hold their user/ names",
          reg.call("whereis", "user/alice") is not None
          and reg.call("whereis", "user/bob") is not None)
    alice_conn = reg.call("whereis", "user/alice")["conn"]
    members = reg.call("members", "room/lobby")
    # The room joined before it registered; alice and bob in either order.
    check("the room and its users are the group room/lobby",
          [(m["conn"], m["value"]) for m in members[:1]] == [
              (room["conn"], None)]
          and sorted((m["conn"], m["value"]) for m in members[1:]) == sorted(
              [(alice_conn, "alice"),
               (reg.call("whereis", "user/bob")["conn"], "bob")]))
    # A listener in the group sees each line as a publish.
    ear = Client(sock)
    ear.call("join", "room/lobby")

    alice.say("hello from alice")
    check("bob gets alice's line",
          bob.wait_for("alice:") == "[lobby] alice: hello from alice")
    check("a line is a publish to the group from its author",
          ear.push() == [2, "publish", ["room/lobby", alice_conn, {
              "from": "alice", "text": "hello from alice"}]])
    # The room handles lines in order and forwards each before the next:
    # once alice has bob's answer, an echo of hers would be there before.
    bob.say("hi alice")
    check("alice gets bob's line",
          alice.wait_for("bob:") == "[lobby] bob: hi alice")
    check("alice's own line is not echoed to her",
          not any("alice:" in line for line in alice.lines))
    ear.push()
    check("the room keeps the lines: its get_messages, by call",
          reg.call("call", "room/lobby", "get_messages") == [
              {"from": "alice", "text": "hello from alice"},
              {"from": "bob", "text": "hi alice"}])
    error, _ = reg.request("call", "room/lobby", "frobnicate")
    check("a call it does not know is answered with an error",
          error is not None and error[0] == "unknown_call")

    carol = User(sock, "lobby", "carol", tmp)
    run["users"].append(carol)
    check("carol joins", carol.wait_for("*** joined") == joined)
    check("carol gets the history",
          carol.wait_for("alice:") == "[lobby] alice: hello from alice"
          and carol.wait_for("bob:") == "[lobby] bob: hi alice")
    check("carol leaves on EOF with status 0", carol.close() == 0)
    check("carol's name goes with her", eventually(
        lambda: reg.call("whereis", "user/carol") is None))
    check("and her membership", "carol" not in [
        m["value"] for m in reg.call("members", "room/lobby")])

    say = subprocess.run([CHAT, "-s", sock, "say", "lobby", "dave",
                          "one shot"], timeout=WAIT, stderr=subprocess.DEVNULL)
    check("chat say exits 0", say.returncode == 0)
    check("chat say reaches alice and bob",
          alice.wait_for("dave:") == "[lobby] dave: one shot"
          and bob.wait_for("dave:") == "[lobby] dave: one shot")
    say = subprocess.run([CHAT, "-s", sock, "say", "lobby", "", ""],
                         timeout=WAIT, stderr=subprocess.DEVNULL)
    check("chat say of an empty line from nobody exits 0",
          say.returncode == 0 and alice.wait_for("[lobby] : ") ==
          "[lobby] : ")
    say = subprocess.run([CHAT, "-s", sock, "say", "nowhere", "dave", "x"],
                         timeout=WAIT, stderr=subprocess.DEVNULL)
    check("chat say to a missing room exits 1", say.returncode == 1)
    readme_walkthrough(sock, alice, bob)

    # Kill the room: the supervisor starts it again, and it registers the
    # same name from a new connection.
    os.kill(room["pid"], signal.SIGKILL)
    new = eventually(lambda: (lambda e: e if e and e["conn"] != room["conn"]
                              else None)(reg.call("whereis", "room/lobby")))
    check("the room comes back under the same name, with a new conn and "
          "pid", new is not None and new["pid"] != room["pid"])
    for u in (alice, bob):
        check(f"{u.name} sees the room go down",
              u.wait_for("went down") ==
              "*** room lobby went down (disconnected), re-resolving\u2026")
        back = u.wait_for("is back")
        check(f"{u.name} sees it come back", new is not None and back ==
              f"*** room lobby is back (conn {new['conn']})")
    alice.say("still there?")
    check("after the restart, alice's line reaches bob",
          bob.wait_for("alice:") == "[lobby] alice: still there?")
    check("the new room is in the group and keeps the lines said since",
          eventually(lambda: reg.call("call", "room/lobby",
                                      "get_messages") == [
              {"from": "alice", "text": "still there?"}]))
    ear.close()
    check("the supervisor is still running", supervisor.poll() is None)

    supervisor.send_signal(signal.SIGTERM)
    try:
        code = supervisor.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        code = None
    check("the supervisor exits 0 on SIGTERM", code == 0)
    check("its room is gone with it", eventually(
        lambda: reg.call("whereis", "room/lobby") is None))
    for u in (alice, bob):
        check(f"{u.name} exits 0 on EOF", u.close() == 0)


def readme_walkthrough(sock, alice, bob):
    """The README's walk-through: its procregctl commands, as printed,
    reach the room's people."""
    ctl = os.environ.get("PROCREGCTL", os.path.join(HERE, "..", "procregctl"))
    with open(os.path.join(HERE, "..", "README.md")) as f:
        readme = f.read()
    walk = readme.split("## The chat rooms (example)", 1)[1].split("## ", 1)[0]
    cmds = [l[2:] for l in walk.splitlines() if l.startswith("$ procregctl ")]
    env = dict(os.environ, PROCREG_SOCKET=sock)
    listing = [shlex.split(c, comments=True) for c in cmds if " list " in c]
    r = subprocess.run([ctl] + listing[0][1:], env=env, capture_output=True,
                       text=True, timeout=WAIT) if listing else None
    check("the README's procregctl list shows the room", r is not None and
          r.returncode == 0 and "room/lobby" in r.stdout)
    says = [shlex.split(c, comments=True) for c in cmds if " publish " in c]
    r = subprocess.run([ctl] + says[0][1:], env=env, capture_output=True,
                       text=True, timeout=WAIT) if says else None
    check("the README's procregctl publish exits 0", r is not None and
          r.returncode == 0)
    check("and alice and bob read its line",
          alice.wait_for("eve:") == "[lobby] eve: hello from the shell"
          and bob.wait_for("eve:") == "[lobby] eve: hello from the shell")


def free_ports(n):
    """n distinct loopback TCP ports free right now (all bound at once, so
    that the kernel cannot hand out one twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def readme_cluster():
    """The README's cluster walk-through (three nodes and an etcd on one
    machine): its commands as printed, run one after the other by one
    bash, the loopback ports swapped for free ones and mktemp's directory
    put under a temporary one.  Each command's output must be the
    README's but for numbers, times and the temporary directory; a read-only
    procregctl command (nodes, whereis, list) is first repeated silently
    until it answers as many lines as the README shows, as a person would
    wait for the nodes to join.  The crashed node's name must go within
    its lease TTL and 3 s."""
    if not check("etcd is installed (make deps installs etcd-server)",
                 shutil.which("etcd") is not None):
        return
    with open(os.path.join(HERE, "..", "README.md")) as f:
        readme = f.read()
    sec = readme.split("## A cluster on one machine", 1)[1]
    block = sec.split("\n## ", 1)[0].split("```\n", 1)[1].split("```", 1)[0]
    steps = []                      # [command, expected output lines]
    for line in block.splitlines():
        if steps and steps[-1][0].endswith("\\"):
            steps[-1][0] += "\n" + line
        elif line.startswith("$ "):
            steps.append([line[2:], []])
        elif steps:
            steps[-1][1].append(line)
    if not check("the README's cluster walk-through has its commands",
                 len(steps) >= 6):
        return
    shown = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", block)))
    ports = dict(zip(shown, free_ports(len(shown))))
    ttl = int((re.findall(r"--lease-ttl (\d+)", block) or ["10"])[0])
    tmp = tempfile.mkdtemp(prefix="procreg-readme-cluster.")
    bindir = os.path.join(tmp, "bin")
    os.mkdir(bindir)
    for name, path in (("procregd", DAEMON), ("procregctl", CTL)):
        with open(os.path.join(bindir, name), "w") as f:
            f.write('#!/bin/sh\nexec "%s" "$@"\n' % os.path.abspath(path))
        os.chmod(os.path.join(bindir, name), 0o755)
    env = dict(os.environ, TMPDIR=tmp,
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    bash = subprocess.Popen(["bash", "--norc", "--noprofile"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    buf = b""

    def run(cmd, timeout=30.0):
        """cmd's output lines, and its duration; None when it did not end
        in time."""
        nonlocal buf
        t0 = time.monotonic()
        bash.stdin.write(cmd.encode() + b"\necho @@@done\n")
        bash.stdin.flush()
        while b"@@@done\n" not in buf:
            left = t0 + timeout - time.monotonic()
            if left <= 0 or not select.select([bash.stdout], [], [],
                                              left)[0]:
                return None, None
            data = os.read(bash.stdout.fileno(), 65536)
            if not data:
                return None, None
            buf += data
        out, buf = buf.split(b"@@@done\n", 1)
        return (out.decode("utf-8", "replace").splitlines(),
                time.monotonic() - t0)

    def norm(line, d):
        if d:
            line = line.replace(d, "$d")
        line = re.sub(r"/tmp/tmp\.[A-Za-z0-9]+", "$d", line)
        line = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "TIME", line)
        # numbers, not names: n1 stays n1
        return " ".join(re.sub(r"(?<![A-Za-z])\d+", "#", line).split())

    d = None
    try:
        for cmd, want in steps:
            for old, new in ports.items():
                cmd = cmd.replace("127.0.0.1:" + old, "127.0.0.1:" + new)
            words = cmd.split()
            if (want and words[0] == "procregctl" and
                    set(words) & {"nodes", "whereis", "list"}):
                run('for i in $(seq 400); do [ "$(%s 2>/dev/null | wc -l)"'
                    ' -eq %d ] && break; sleep 0.025; done' % (cmd,
                                                               len(want)))
            got, took = run(cmd)
            if d is None:
                d = (run('echo "$d"')[0] or [None])[0]
            first = cmd.splitlines()[0]
            if not check("README cluster: `%s` ends" % first[:60],
                         got is not None):
                break
            # bash's job notices, which the README leaves out
            got = [x for x in got if not re.match(
                r"(bash: line \d+: +\d+|\[\d+\][-+]?) +(Killed|Terminated|"
                r"Done|Exit \d+) ", x)]
            same = [norm(x, d) for x in got] == [norm(x, d) for x in want]
            if not check("README cluster: `%s` prints what the README "
                         "shows" % first[:60], same):
                print("    README:\n      " + "\n      ".join(want) +
                      "\n    got:\n      " + "\n      ".join(got))
                for log in sorted(glob.glob(os.path.join(d or tmp, "*.log"))):
                    with open(log, errors="replace") as f:
                        print("    --- %s:\n      %s" % (log, "\n      ".join(
                            f.read().splitlines()[-12:])))
            if "monitor" in words and "kill" in words:
                check("README cluster: the crashed node's name went within "
                      "its lease TTL and 3 s (%.1f s, TTL %d)" % (took, ttl),
                      took < ttl + 3)
        bash.stdin.close()
        try:
            code = bash.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(bash.pid, 0)
            left = True
        except ProcessLookupError:
            left = False
        check("README cluster: bash exits 0 and nothing it started is left",
              code == 0 and not left)
    finally:
        try:
            os.killpg(bash.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        bash.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-chat.")
    sock = os.path.join(tmp, "s.sock")
    daemon = subprocess.Popen([DAEMON, "-s", sock],
                              stderr=subprocess.DEVNULL)
    run = {"supervisor": None, "users": [],
           "sup_err": open(os.path.join(tmp, "supervisor.err"), "w+")}
    try:
        scenario(sock, tmp, run)
    finally:
        if results["failed"]:
            for u in run["users"]:
                u.dump()
            run["sup_err"].seek(0)
            print("--- supervisor stderr:\n" + run["sup_err"].read())
        for p in [u.proc for u in run["users"]] + [run["supervisor"]]:
            if p is not None:
                stop(p)
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            stop(daemon)
            code = None
        check("the daemon exits 0 on SIGTERM", code == 0)
        shutil.rmtree(tmp, ignore_errors=True)
    readme_cluster()
    print(f"chat: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
