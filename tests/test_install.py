#!/usr/bin/python3
"""The issue's acceptance story, automated: `make install` into a
temporary prefix, then a dozen-line C program built with nothing but the
installed header and `pkg-config procreg` registers a name, prints a
message sent with `procregctl send`, and a `procregctl monitor` waiting
on the name prints `disconnected` when the program is killed with
SIGKILL.  Every wait is bounded; nothing is timed."""
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYFILES = sorted(f for f in os.listdir(os.path.join(ROOT, "src", "python",
                                                    "procreg"))
                 if f.endswith(".py"))
DOZEN = r"""
#include <procreg.h>
#include <stdio.h>

int main(void) {
	procreg_t *p;
	struct procreg_event *ev;
	char text[256];

	if (procreg_connect(&p, NULL) || procreg_register(p, "dozen", NULL, 0, NULL))
		return 1;
	printf("registered\n"); fflush(stdout);
	while (procreg_next_event(p, -1, &ev) == PROCREG_OK) {
		procreg_format_json(text, sizeof(text), ev->payload, ev->payload_len);
		printf("got %s\n", text); fflush(stdout);
		procreg_event_free(ev);
	}
	return 0;
}
"""

results = {"passed": 0, "failed": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what)
    return cond


def readline(proc, timeout=10.0):
    """A line of proc's stdout, or b"" when none came in time."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else b""


def build_tree_example(tmp, san, sock, ctl):
    """The README's C example, as printed, built against the build tree
    (PKG_CONFIG_PATH=src/lib) and run from it: the uninstalled .pc's rpath
    lets the loader find the build tree's libprocreg."""
    with open(os.path.join(ROOT, "README.md")) as f:
        code = f.read().split("```c\n", 1)[1].split("```", 1)[0]
    src = os.path.join(tmp, "readme.c")
    with open(src, "w") as f:
        f.write(code)
    exe = os.path.join(tmp, "readme")
    env = dict(os.environ, PROCREG_SOCKET=sock,
               PKG_CONFIG_PATH=os.path.join(ROOT, "src", "lib"))
    env.pop("LD_LIBRARY_PATH", None)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "procreg"],
                           env=env, capture_output=True, text=True)
    cc = subprocess.run(["cc"] + san + ["-o", exe, src]
                        + flags.stdout.split(), env=env)
    if not check("the README's C example builds against the build tree",
                 flags.returncode == 0 and cc.returncode == 0):
        return
    # On a terminal, as a reader of the README runs it: its printf is
    # line-buffered there (into a pipe it would sit in stdio's buffer).
    master, slave = pty.openpty()
    prog = subprocess.Popen([exe], env=env, stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    try:
        # It prints nothing until a message comes: send until its name is
        # there (exit 1 before), then read what it prints.
        sent = False
        deadline = time.monotonic() + 10
        while not sent and prog.poll() is None and \
                time.monotonic() < deadline:
            sent = subprocess.run([ctl, "send", "dozen", "hello"], env=env,
                                  stderr=subprocess.DEVNULL,
                                  timeout=10).returncode == 0
            if not sent:
                time.sleep(0.01)
        line = b""
        while sent and not line.endswith(b"\n"):
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            chunk = os.read(master, 256)
            if not chunk:
                break
            line += chunk
        check("... and runs from it, receiving a message (%s)" % (
            prog.stderr.read().decode().strip() if prog.poll() is not None
            else "running"), sent and line == b'got "hello"\r\n')
    finally:
        prog.kill()
        prog.wait()
        os.close(master)


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-install.")
    prefix = os.path.join(tmp, "prefix")
    sock = os.path.join(tmp, "s.sock")
    env = dict(os.environ, PROCREG_SOCKET=sock,
               PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    procs = []
    # Under `make test SANITIZE=1` the tree is sanitized: keep it so.
    sanitized = os.environ.get("PROCREG_SANITIZED") == "1"
    make = ["make", "-s", "--no-print-directory",
            "SANITIZE=" + ("1" if sanitized else "")]
    san = ["-fsanitize=address,undefined"] if sanitized else []
    try:
        r = subprocess.run(make + ["install", "PREFIX=" + prefix,
                                   "SYSCONFDIR=" + os.path.join(prefix, "etc")],
                           cwd=ROOT, stdout=subprocess.DEVNULL)
        check("make install PREFIX=... succeeds", r.returncode == 0)
        for f in ["sbin/procregd", "bin/procregctl", "include/procreg.h",
                  "include/procreg-protocol.h", "lib/libprocreg.so",
                  "lib/libprocreg.so.1", "lib/libprocreg.a",
                  "lib/pkgconfig/procreg.pc", "etc/procreg/procreg.conf"]:
            check("installed " + f, os.path.exists(os.path.join(prefix, f)))
        pydir = os.path.join(prefix, "lib", "python%d.%d" %
                             sys.version_info[:2], "dist-packages")
        r = subprocess.run(["/usr/bin/python3", "-c",
                            "import procreg; print(procreg.__file__)"],
                           env=dict(env, PYTHONPATH=pydir),
                           capture_output=True, text=True, cwd=tmp)
        check("the Python package is installed where that prefix's "
              "dist-packages is, and imports from there",
              r.returncode == 0 and r.stdout.startswith(pydir))
        # The packager's way: DESTDIR and PREFIX=/usr, checked as a tree.
        dest = os.path.join(tmp, "dest")
        r = subprocess.run(make + ["install", "DESTDIR=" + dest,
                                   "PREFIX=/usr"], cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        tree = sorted(os.path.relpath(os.path.join(d, f), dest)
                      for d, _, fs in os.walk(dest) for f in fs)
        want = sorted([
            "usr/sbin/procregd", "usr/bin/procregctl",
            "usr/lib/libprocreg.a", "usr/lib/libprocreg.so",
            "usr/lib/libprocreg.so.1", "usr/lib/pkgconfig/procreg.pc",
            "usr/include/procreg.h", "usr/include/procreg-protocol.h",
            "usr/lib/systemd/system/procreg.socket",
            "usr/lib/systemd/system/procreg.service",
            "usr/lib/systemd/user/procreg.socket",
            "usr/lib/systemd/user/procreg.service",
            "etc/procreg/procreg.conf",
            "usr/share/man/man1/procregctl.1",
            "usr/share/man/man3/libprocreg.3",
            "usr/share/bash-completion/completions/procregctl",
            "usr/share/zsh/site-functions/_procregctl",
            "usr/share/man/man5/procreg.conf.5",
            "usr/share/man/man7/procreg.7",
            "usr/share/man/man8/procregd.8",
            "usr/share/doc/procreg/PROTOCOL.md"] +
            ["usr/lib/python3/dist-packages/procreg/" + f
             for f in PYFILES])
        check("make install DESTDIR=... PREFIX=/usr installs exactly the "
              "expected tree", r.returncode == 0 and tree == want)
        if tree != want:
            print("  extra:", sorted(set(tree) - set(want)),
                  "missing:", sorted(set(want) - set(tree)))
        with open(os.path.join(dest, "usr/lib/systemd/system/"
                               "procreg.service")) as f:
            check("the unit runs the installed daemon",
                  "ExecStart=/usr/sbin/procregd" in f.read())
        r = subprocess.run(make + ["install", "DESTDIR=" + dest,
                                   "PREFIX=/usr"], cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        conf = os.path.join(dest, "etc/procreg/procreg.conf")
        with open(conf, "a") as f:
            f.write("# edited by the administrator\n")
        r = subprocess.run(make + ["install", "DESTDIR=" + dest,
                                   "PREFIX=/usr"], cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        with open(conf) as f:
            check("a second install keeps an edited configuration",
                  "edited by the administrator" in f.read())
        flags = subprocess.run(["pkg-config", "--cflags", "--libs",
                                "procreg"], env=env, capture_output=True,
                               text=True)
        check("pkg-config finds procreg", flags.returncode == 0)
        src = os.path.join(tmp, "dozen.c")
        with open(src, "w") as f:
            f.write(DOZEN)
        exe = os.path.join(tmp, "dozen")
        cc = subprocess.run(["cc"] + san + ["-o", exe, src]
                            + flags.stdout.split()
                            + ["-Wl,-rpath," + os.path.join(prefix, "lib")],
                            env=env)
        if not check("the dozen-line program builds from the installed "
                     "files", cc.returncode == 0):
            return 1

        daemon = subprocess.Popen([os.path.join(prefix, "sbin", "procregd"),
                                   "-s", sock], stderr=subprocess.DEVNULL)
        procs.append(daemon)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        ctl = os.path.join(prefix, "bin", "procregctl")
        prog = subprocess.Popen([exe], env=env, stdout=subprocess.PIPE)
        procs.append(prog)
        check("it registers its name", readline(prog) == b"registered\n")
        r = subprocess.run([ctl, "send", "dozen", "hello"], env=env,
                           timeout=10)
        check("procregctl send succeeds", r.returncode == 0)
        check("the program receives the message",
              readline(prog) == b'got "hello"\n')
        mon = subprocess.Popen([ctl, "monitor", "dozen"], env=env,
                               stdout=subprocess.PIPE)
        procs.append(mon)
        # The monitor is set once procregctl has asked; wait for it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = subprocess.run([ctl, "--json", "stats"], env=env,
                                 capture_output=True, text=True).stdout
            if '"monitors": 1' in out or '"monitors":1' in out:
                break
            time.sleep(0.01)
        prog.send_signal(signal.SIGKILL)
        prog.wait(timeout=10)
        check("procregctl monitor prints disconnected",
              readline(mon) == b"disconnected\n")
        check("and exits 0", mon.wait(timeout=10) == 0)
        build_tree_example(tmp, san, sock, ctl)
        daemon.send_signal(signal.SIGTERM)
        check("the installed daemon exits 0", daemon.wait(timeout=10) == 0)
        r = subprocess.run(make + ["uninstall", "PREFIX=" + prefix,
                                   "SYSCONFDIR=" + os.path.join(prefix, "etc")],
                           cwd=ROOT)
        left = [os.path.join(d, f) for d, _, fs in os.walk(prefix)
                for f in fs]
        check("make uninstall removes every file", r.returncode == 0
              and not left)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("install: %d passed, %d failed" % (results["passed"],
                                             results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
