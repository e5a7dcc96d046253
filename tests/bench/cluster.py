#!/usr/bin/python3
"""cluster.py: the cluster's figures (issue 14, proto/PROTOCOL.md §12).

Starts one etcd member (data on /dev/shm unless --etcd-dir) and three
procregd nodes a, b, c on free loopback ports and private sockets in
temporary directories, through tests/clusterlib.py (every process in a
group of its own that dies with this script, everything stopped and
removed at the end, on failure and on ^C too). Nodes are pinned to
--server-cpu, the clients (procreg-bench, etcd-rtt, holders) to
--client-cpu; etcd is not pinned. Phases (--only):

  memory   b's RSS, and with gdb the heap malloc has handed out
           (malloc_stats), before and after N cluster names registered on
           a are in its cache: bytes per cached name (and per owned name
           on a, per local name on b, for comparison)
  whereis  procreg-bench whereis [name] on b at -c 1 -P 1, -c 50 -P 1 and
           -c 50 -P 16: N local names (held on b) against N cluster names
           (held on a, answered from b's cache), alternating, --rounds
           rounds; needs memory's set-up, which it runs
  instr    instructions per whereis, local and cluster, counted by
           callgrind on a fourth node v (needs valgrind): the figure the
           machine's load does not move
  register one client's sequential cluster register+unregister pairs on
           a (procreg-bench -c 1 -P 1 --scope cluster) against etcd-rtt's
           bare create+delete transactions through the same etcd client,
           without and with 3 watches of its keys (+3w: etcd's fan-out
           to the nodes' watches), rotating the order; then throughput at
           -c 50 -P 1 against etcd-rtt -c 50
  drop     a connection on a holding --drop-names cluster names closes:
           the time until b's and c's caches (and a's) no longer hold
           them, polling stats()["cluster"]["names"], with an etcd watch
           timing each delete transaction's commit and the CPU time each
           process spent meanwhile; then the same drop without procregd
           (etcd-rtt --drop, the node's fenced batches and other ways to
           delete, 3 watchers) and one 63-delete transaction's latency
  burst    overload: one connection pipelines K cluster registers at
           once (no window), and -c 50 -P 16 register chains (800 at
           once): how many are answered unavailable, and how long until
           the nodes' deletes are done and etcd answers quickly again

Every figure is the median of --rounds runs (default 3; the machine is
shared). Run from anywhere after `make` and the bench binaries:

  /usr/bin/python3 tests/bench/cluster.py [--rounds 5] [--names 100000]

Environment: PROCREGD, PROCREG_BENCH, ETCD_RTT (the binaries; default the
build tree's), ETCD (default etcd on PATH), CLUSTER_LOG_LEVEL (the
daemons', default warning).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("CLUSTER_LOG_LEVEL", "warning")
os.environ.setdefault("PROCREGD", os.path.join(ROOT, "procregd"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import clusterlib as cl  # noqa: E402
import msgpack  # noqa: E402

BENCH = os.environ.get("PROCREG_BENCH", os.path.join(ROOT, "procreg-bench"))
RTT = os.environ.get("ETCD_RTT", os.path.join(ROOT, "tests", "bench",
                                              "etcd-rtt"))
SHAPES = ((1, 1), (50, 1), (50, 16))


def log(*a):
    print("== [load %.1f]" % os.getloadavg()[0], *a, flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rss(pid):
    """VmRSS of pid in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for %d" % pid)


HZ = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    """utime+stime of pid (all its threads), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def heap(node):
    """Bytes malloc has handed out and not had back in node's daemon
    (glibc's malloc_stats(), "in use bytes" incl. mmap, called through
    gdb, which prints to the daemon's stderr: its log); None without
    gdb."""
    if shutil.which("gdb") is None:
        return None
    size0 = os.path.getsize(node.log)
    subprocess.run(["gdb", "-p", str(node.proc.pid), "-batch", "-nx", "-ex",
                    "call ((void(*)(void))malloc_stats)()"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120, check=True)

    def parse():
        with open(node.log, errors="replace") as f:
            f.seek(size0)
            text = f.read()
        if "Total (incl. mmap):" not in text:
            return None
        tail = text.split("Total (incl. mmap):", 1)[1]
        for line in tail.splitlines():
            if line.strip().startswith("in use bytes"):
                return int(line.split("=")[1])
        return None
    return cl.eventually(parse, 10, 0.05)


def pin(pid, cpu):
    os.sched_setaffinity(pid, {cpu})


def csv_rows(text):
    """procreg-bench/etcd-rtt --csv output: a list of dicts."""
    lines = [l for l in text.splitlines() if l and "," in l]
    rows, header = [], None
    for l in lines:
        f = l.split(",")
        if f[0] in ("target", "test"):
            header = f
            continue
        rows.append(dict(zip(header, f)))
    return rows


class Bench:
    def __init__(self, args):
        self.a = args
        if args.out:
            # the nodes' logs stay there too
            os.makedirs(args.out, exist_ok=True)
            self.tmp = self.out = args.out
        else:
            self.tmp = self.out = cl.mkdtemp("procreg-cbench.")
        self.etcd = None
        self.nodes = {}
        self.polls = {}
        self.holders = []
        self.extra = {}
        self.results = {}
        self.raw = open(os.path.join(self.out, "raw.txt"), "a")

    # ------------------------------------------------------------ set-up

    def start(self):
        a = self.a
        edir = a.etcd_dir or ("/dev/shm" if os.access("/dev/shm", os.W_OK)
                              else None)
        import tempfile
        base = tempfile.mkdtemp(prefix="procreg-cbench-etcd.", dir=edir)
        cl._dirs.append(base)
        for attempt in range(3):
            m = cl.EtcdMember(base, "e%d" % (attempt + 1))
            m.initial_cluster = "%s=%s" % (m.name, m.peer_url)
            m.token = "procreg-bench-" + uuid.uuid4().hex[:8]
            m.start()
            if cl.eventually(lambda: m.answers() or not m.alive(), 30, 0.1) \
                    and m.alive():
                break
            m.stop()
        else:
            raise RuntimeError("etcd did not start:\n" + m.log_tail())
        self.etcd = m
        self.prefix = "/bench-%s/" % uuid.uuid4().hex[:8]
        extra = ["--max-names", str(max(200000, 2 * a.names)),
                 "--max-conns", "20000", "--max-conns-per-uid", "0",
                 "--max-names-per-uid", "0"]
        for name in ("a", "b", "c"):
            n = cl.Node(self.tmp, name, m.url, self.prefix, a.lease_ttl,
                        extra=extra).start()
            self.nodes[name] = n
        for n in self.nodes.values():
            n.wait_up(30)
            pin(n.proc.pid, a.server_cpu)
        log("etcd %s (data in %s), nodes a b c under %s, pinned to CPU %d;"
            " clients on CPU %d; procregd %s" % (
                m.url, base, self.prefix, a.server_cpu, a.client_cpu,
                os.environ["PROCREGD"]))

    def stop(self):
        for p in self.holders:
            cl.stop_proc(p)
        for c in self.polls.values():
            c.close()
        warn = {}
        for name, n in self.nodes.items():
            n.stop()
            try:
                with open(n.log, errors="replace") as f:
                    lines = [l for l in f if not l.startswith("===") and
                             ("warning" in l.lower() or
                              "error" in l.lower())]
            except OSError:
                lines = []
            if lines:
                warn[name] = lines
        if self.etcd is not None:
            self.etcd.stop()
            if self.a.out:
                shutil.copy(self.etcd.log, os.path.join(self.out,
                                                        "etcd.log"))
        for name, lines in warn.items():
            log("node %s logged %d warnings/errors, the last: %s"
                % (name, len(lines), lines[-1].strip()))

    def poll(self, name):
        c = self.polls.get(name)
        if c is None:
            c = self.polls[name] = cl.Client(self.nodes[name].path, 10)
        return c

    def cnames(self, name):
        return self.poll(name).request("stats")["cluster"]["names"]

    def wait_cnames(self, name, pred, timeout):
        got = cl.eventually(lambda: pred(self.cnames(name)), timeout, 0.01)
        if not got:
            raise RuntimeError("node %s: %d cluster names after %gs"
                               % (name, self.cnames(name), timeout))

    def wait_up(self, timeout=120):
        """Until every node is up again (after a lost lease)."""
        for n in self.nodes.values():
            n.wait_up(timeout)

    def settle(self, timeout=120):
        """Until every node's cache is back to no cluster names (a closed
        connection's names deleted) and etcd answers a read within 50 ms;
        the seconds it took."""
        t0 = time.monotonic()
        for n in self.nodes:
            self.wait_cnames(n, lambda x: x == 0, timeout)

        def quick():
            t = time.monotonic()
            try:
                self.etcd.api("/v3/kv/range", {"key": cl.b64("x")}, 5)
            except (OSError, ValueError, http.client.HTTPException):
                return False
            return time.monotonic() - t < 0.05
        cl.eventually(quick, timeout, 0.1)
        return time.monotonic() - t0

    def losses(self):
        """{node: how many times its log says it lost its lease}."""
        out = {}
        for name, n in self.nodes.items():
            try:
                with open(n.log, errors="replace") as f:
                    out[name] = sum("lost its lease" in l for l in f)
            except OSError:
                out[name] = 0
        return out

    def client_argv(self, argv):
        return ["taskset", "-c", str(self.a.client_cpu)] + argv

    def run(self, argv, timeout=600):
        argv = self.client_argv(argv)
        p = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        self.raw.write("$ %s\n%s%s" % (" ".join(argv), p.stdout, p.stderr))
        self.raw.flush()
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (argv, p.returncode,
                                                       p.stderr.strip()))
        return p.stdout

    def hold(self, node, names, prefix, scope, timeout):
        """A procreg-bench --hold on node; returns (process, seconds)."""
        logf = os.path.join(self.tmp, "hold-%s-%s.out" % (node, prefix))
        path = (self.nodes.get(node) or self.extra[node]).path
        argv = self.client_argv([BENCH, "-q", "-s", path,
                                 "--hold", "--names", str(names),
                                 "--prefix", prefix, "--scope", scope,
                                 "-t", "none"])
        t0 = time.monotonic()
        p = cl.spawn(argv, logf)
        self.holders.append(p)

        def ready():
            if p.poll() is not None:
                return "died"
            with open(logf) as f:
                return "ready" if "ready" in f.read() else None
        got = cl.eventually(ready, timeout, 0.05)
        if got != "ready":
            raise RuntimeError("holder on %s %s: %s" % (
                node, got or "not ready", cl.tail(logf)))
        return p, time.monotonic() - t0

    def unhold(self, p):
        cl.stop_proc(p)
        self.holders.remove(p)

    # ------------------------------------------------- memory and whereis

    def phase_memory(self):
        a = self.a
        N = a.names
        nb, na = self.nodes["b"].proc.pid, self.nodes["a"].proc.pid
        time.sleep(0.5)
        b0, a0 = rss(nb), rss(na)
        hb0, ha0 = heap(self.nodes["b"]), heap(self.nodes["a"])
        log("memory: %d cluster names registered by a holder on a" % N)
        self.chold, secs = self.hold("a", N, "c", "cluster",
                                     60 + N / 200.0)
        t = time.monotonic()
        self.wait_cnames("b", lambda n: n >= N, 120)
        lag = time.monotonic() - t
        time.sleep(1.0)
        b1, a1 = rss(nb), rss(na)
        hb1, ha1 = heap(self.nodes["b"]), heap(self.nodes["a"])
        log("registered in %.1f s (%.0f/s, windows of 64 per holder "
            "connection); b's cache had them %.0f ms after the last answer"
            % (secs, N / secs, lag * 1000))
        self.lhold, _ = self.hold("b", N, "n", "local", 120)
        time.sleep(1.0)
        b2 = rss(nb)
        hb2 = heap(self.nodes["b"])
        r = {"names": N, "reg_secs": secs, "reg_rate": N / secs,
             "b_rss0": b0, "b_rss1": b1, "b_rss2": b2, "a_rss0": a0,
             "a_rss1": a1,
             "cached_B_per_name": (b1 - b0) / N,
             "owned_B_per_name": (a1 - a0) / N,
             "local_B_per_name": (b2 - b1) / N}
        if hb0 is not None:
            r.update({"heap_cached_B_per_name": (hb1 - hb0) / N,
                      "heap_owned_B_per_name": (ha1 - ha0) / N,
                      "heap_local_B_per_name": (hb2 - hb1) / N})
            log("heap in use (malloc_stats): %.1f B per cached cluster "
                "name on b, %.1f B per owned cluster name on a, %.1f B per "
                "local name on b" % (r["heap_cached_B_per_name"],
                                     r["heap_owned_B_per_name"],
                                     r["heap_local_B_per_name"]))
        self.results["memory"] = r
        log("b RSS %.1f -> %.1f MB: %.1f B per cached cluster name; a "
            "(the owner) %.1f B per owned cluster name; b %.1f B per local "
            "name" % (b0 / 1e6, b1 / 1e6, r["cached_B_per_name"],
                      r["owned_B_per_name"], r["local_B_per_name"]))

    def phase_whereis(self):
        a = self.a
        N = a.names
        b = self.nodes["b"]
        reqs = {(1, 1): a.req_c1, (50, 1): a.req_c50, (50, 16): a.req_c50p16}
        rows = {}
        for rnd in range(a.rounds):
            for shape in SHAPES:
                kinds = ("local", "cluster") if rnd % 2 == 0 else \
                    ("cluster", "local")
                for kind in kinds:
                    out = self.run([BENCH, "-q", "--csv", "-s", b.path,
                                    "--pid", str(b.proc.pid),
                                    "-c", str(shape[0]), "-P", str(shape[1]),
                                    "-n", str(reqs[shape]), "--names", str(N),
                                    "--preloaded", "--prefix",
                                    "n" if kind == "local" else "c",
                                    "-t", "whereis"])
                    row = csv_rows(out)[0]
                    if int(row["errors"]) or row["timed_out"] != "0":
                        raise RuntimeError("whereis run failed: %r" % row)
                    rows.setdefault((shape, kind), []).append(row)
            log("whereis round %d/%d done" % (rnd + 1, a.rounds))
        # a sanity check: the cluster names are cluster names
        e = self.poll("b").request("whereis", ["c0000000"])
        assert e and e.get("scope") == "cluster" and e.get("node") == "a", e
        res = []
        for shape in SHAPES:
            L, C = rows[(shape, "local")], rows[(shape, "cluster")]
            f = lambda rs, k: med([float(r[k]) for r in rs])  # noqa: E731
            ratios = [float(c["ops_per_s"]) / float(l["ops_per_s"])
                      for l, c in zip(L, C)]
            res.append({
                "shape": "-c %d -P %d" % shape, "n": reqs[shape],
                "local_ops": f(L, "ops_per_s"), "cluster_ops":
                f(C, "ops_per_s"),
                # paired: each round ran both, back to back
                "ratio": med(ratios), "ratio_rounds": ratios,
                "local_cpu": f(L, "cpu_us_per_op"),
                "cluster_cpu": f(C, "cpu_us_per_op"),
                "local_p50": f(L, "p50_us"), "cluster_p50": f(C, "p50_us"),
                "local_p99": f(L, "p99_us"), "cluster_p99": f(C, "p99_us"),
                "local_all": [float(r["ops_per_s"]) for r in L],
                "cluster_all": [float(r["ops_per_s"]) for r in C]})
        self.results["whereis"] = res

    def phase_instr(self):
        """Instructions per whereis, which the machine's load does not
        change: a fourth node v under callgrind joins (its cache fills
        with a's N cluster names), N local names are held on it, and
        callgrind's counters are zeroed before and dumped after each
        procreg-bench run (callgrind_control)."""
        a = self.a
        N = a.names
        if shutil.which("valgrind") is None or \
                shutil.which("callgrind_control") is None:
            log("instr: no valgrind, skipped")
            return
        extra = ["--max-names", str(max(200000, 2 * N)), "--max-conns",
                 "20000", "--max-conns-per-uid", "0",
                 "--max-names-per-uid", "0"]
        v = cl.Node(self.tmp, "v", self.etcd.url, self.prefix,
                    a.lease_ttl, extra=extra)
        cgdir = os.path.join(self.tmp, "callgrind")
        os.makedirs(cgdir, exist_ok=True)
        v.argv = ["valgrind", "--tool=callgrind", "--compress-strings=no",
                  "--callgrind-out-file=%s/cg.%%p" % cgdir] + v.argv
        v.start()
        self.extra = {"v": v}
        try:
            v.wait_up(300)
            pin(v.proc.pid, a.server_cpu)
            with cl.Client(v.path, 60) as vc:
                if not cl.eventually(lambda: vc.request("stats")[
                        "cluster"]["names"] >= N, 300, 0.5):
                    raise RuntimeError("v's cache did not fill")
            hold, _ = self.hold("v", N, "n", "local", 600)
            res = {}
            for shape, n in (((1, 1), a.instr_n // 10),
                             ((50, 16), a.instr_n)):
                for kind in ("local", "cluster") * a.rounds:
                    subprocess.run(["callgrind_control", "-z",
                                    str(v.proc.pid)], check=True,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                    self.run([BENCH, "-q", "--csv", "-s", v.path,
                              "-c", str(shape[0]), "-P", str(shape[1]),
                              "-n", str(n), "--names", str(N),
                              "--preloaded", "--prefix",
                              "n" if kind == "local" else "c",
                              "-t", "whereis", "--timeout", "600"], 900)
                    before = set(os.listdir(cgdir))
                    subprocess.run(["callgrind_control", "-d",
                                    str(v.proc.pid)], check=True,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                    new = cl.eventually(lambda: set(os.listdir(cgdir)) -
                                        before, 30, 0.1)
                    with open(os.path.join(cgdir, sorted(new)[-1])) as f:
                        tot = [int(l.split()[1]) for l in f
                               if l.startswith("totals:")][0]
                    res.setdefault("-c %d -P %d" % shape, {}).setdefault(
                        kind, []).append(tot / n)
            self.unhold(hold)
        finally:
            v.stop()
        self.results["instr"] = res
        for shape, d in res.items():
            log("instructions per whereis at %s: local %s, cluster %s" % (
                shape, ["%.0f" % x for x in d["local"]],
                ["%.0f" % x for x in d["cluster"]]))

    def release_whereis(self):
        """Drops the holders; the 100,000-name drop timed on b."""
        N = self.a.names
        t0 = time.monotonic()
        self.unhold(self.chold)
        self.wait_cnames("b", lambda n: n == 0, 300)
        secs = time.monotonic() - t0
        self.results["big_drop"] = {"names": N, "secs": secs}
        log("the holder of %d cluster names on a stopped: gone from b's "
            "cache after %.2f s" % (N, secs))
        self.unhold(self.lhold)

    # ------------------------------------------------------------ register

    def phase_register(self):
        a = self.a
        node = self.nodes["a"]
        rows = {}
        kinds = ("procreg", 0, 3)   # procregd; etcd-rtt with W watchers
        for rnd in range(a.rounds):
            # a different order each round
            for kind in kinds[rnd % 3:] + kinds[:rnd % 3]:
                if kind == "procreg":
                    out = self.run([BENCH, "-q", "--csv", "-s", node.path,
                                    "--pid", str(node.proc.pid), "-c", "1",
                                    "-P", "1", "-n", str(a.reg_n),
                                    "--names", "0", "--scope", "cluster",
                                    "-t", "register"])
                else:
                    out = self.run([RTT, "--csv", "--etcd", self.etcd.url,
                                    "-n", str(a.reg_n), "-c", "1",
                                    "--watchers", str(kind)])
                for r in csv_rows(out):
                    if int(r.get("errors", 0)):
                        raise RuntimeError("register run with errors: %r"
                                           % r)
                    test = r["test"] if kind in ("procreg", 0) else \
                        r["test"] + "+3w"
                    rows.setdefault(test, []).append(r)
            log("register latency round %d/%d done" % (rnd + 1, a.rounds))
        lat = {}
        for test, rs in rows.items():
            lat[test] = {"p50": med([float(r["p50_us"]) for r in rs]),
                         "p99": med([float(r["p99_us"]) for r in rs]),
                         "rate": med([float(r["ops_per_s"] if "ops_per_s"
                                            in r else r["pairs_per_s"])
                                      for r in rs]),
                         "p50_all": [float(r["p50_us"]) for r in rs]}
            if test == "register-cluster":
                lat[test]["cpu"] = med([float(r["cpu_us_per_op"])
                                        for r in rs])
            if test.startswith("etcd-txn-pair"):
                lat[test]["cpu"] = med([float(r["cpu_us_per_pair"])
                                        for r in rs])
        self.results["register_latency"] = lat
        # throughput
        tp = {}
        for rnd in range(a.rounds):
            for kind, conc in (("procreg", (50, 1)), ("etcd", 0),
                               ("etcd", 3)):
                if kind == "procreg":
                    out = self.run([BENCH, "-q", "--csv", "-s", node.path,
                                    "--pid", str(node.proc.pid),
                                    "-c", str(conc[0]), "-P", str(conc[1]),
                                    "-n", str(a.reg_tp_n), "--names", "0",
                                    "--scope", "cluster", "-t", "register"])
                    r = csv_rows(out)[0]
                    key = "procreg -c %d -P %d" % conc
                    rate = float(r["ops_per_s"])
                    extra = {"cpu": float(r["cpu_us_per_op"])}
                else:
                    out = self.run([RTT, "--csv", "--etcd", self.etcd.url,
                                    "-n", str(a.reg_tp_n), "-c", "50",
                                    "--watchers", str(conc)])
                    r = csv_rows(out)[0]
                    key = "etcd-rtt -c 50%s" % (" --watchers 3" if conc
                                                 else "")
                    rate = float(r["pairs_per_s"])
                    extra = {"cpu": float(r["cpu_us_per_pair"])}
                d = tp.setdefault(key, {"rate": [], "p50": [], "p99": [],
                                        "errors": [], "cpu": []})
                d["rate"].append(rate)
                d["p50"].append(float(r["p50_us"]))
                d["p99"].append(float(r["p99_us"]))
                d["errors"].append(int(r.get("errors", 0)))
                if "cpu" in extra:
                    d["cpu"].append(extra["cpu"])
                self.settle()
            log("register throughput round %d/%d done" % (rnd + 1, a.rounds))
        self.results["register_tp"] = tp

    # ---------------------------------------------------------------- drop

    def phase_drop(self):
        a = self.a
        D = a.drop_names
        res = []
        for rnd in range(a.rounds):
            res.append(self.drop_once(D, rnd))
            r = res[-1]
            log("drop round %d/%d: b %.0f ms, c %.0f ms, a %.0f ms; etcd "
                "deletes from %.0f to %.0f ms in %d txns; CPU ms meanwhile "
                "%s" % (rnd + 1, a.rounds, r["b"] * 1e3, r["c"] * 1e3,
                        r["a"] * 1e3, r["first_del"] * 1e3,
                        r["last_del"] * 1e3, r["txns"], r["cpu_ms"]))
        self.results["drop"] = res
        # the node's delete transactions alone: 63 fenced deletes, 4 at
        # once, through the same client (etcd-rtt --batch 63 -c 4)
        rows = []
        for rnd in range(a.rounds):
            for c in (1, 4):
                out = self.run([RTT, "--csv", "--etcd", self.etcd.url,
                                "-n", "200", "-c", str(c), "--batch", "63"])
                rows += [dict(r, chains=c) for r in csv_rows(out)
                         if r["test"] == "etcd-txn-delete"]
        self.results["doom_txn"] = {
            c: {"p50": med([float(r["p50_us"]) for r in rows
                            if r["chains"] == c]),
                "p99": med([float(r["p99_us"]) for r in rows
                            if r["chains"] == c])} for c in (1, 4)}
        # the same drop without procregd, and other ways to delete:
        # etcd-rtt --drop D --how ... with 3 watchers (the nodes' watches)
        alt = {}
        for rnd in range(a.rounds):
            for how in ("fenced", "flat", "plain", "revoke"):
                out = self.run([RTT, "--csv", "--etcd", self.etcd.url,
                                "--drop", str(D), "--how", how,
                                "--watchers", "3"])
                r = csv_rows(out)[0]
                d = alt.setdefault(how, {"answered": [], "seen": []})
                d["answered"].append(float(r["answered_ms"]))
                d["seen"].append(float(r["seen_ms"]))
            log("bare etcd drops round %d/%d done" % (rnd + 1, a.rounds))
        self.results["drop_alt"] = alt

    def drop_once(self, D, rnd):
        base = {n: self.cnames(n) for n in self.nodes}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.nodes["a"].path)
        unp = msgpack.Unpacker(raw=False)
        sent = got = 0
        win = 64
        names = ["drop%d.%05d" % (rnd, i) for i in range(D)]
        while got < D:
            if sent < D and sent - got < win:
                k = min(win - (sent - got), D - sent)
                s.sendall(b"".join(msgpack.packb(
                    [0, 1, "register", [nm, None, {"scope": "cluster"}]])
                    for nm in names[sent:sent + k]))
                sent += k
            data = s.recv(1 << 16)
            if not data:
                raise RuntimeError("a closed the registering connection")
            unp.feed(data)
            for m in unp:
                if m[0] == 1:
                    got += 1
                    if m[2] is not None:
                        raise RuntimeError("register failed: %r" % (m[2],))
        for n in self.nodes:
            self.wait_cnames(n, lambda x, n=n: x >= base[n] + D, 60)
        rev = self.poll("b").request("stats")["cluster"]["revision"]
        w = EtcdWatch(self.etcd, self.prefix + "names/", rev + 1)
        w.start()
        time.sleep(0.2)
        done = {}
        pids = {n: self.nodes[n].proc.pid for n in self.nodes}
        pids["etcd"] = self.etcd.proc.pid
        k0 = {n: ticks(p) for n, p in pids.items()}
        t0 = time.monotonic()
        s.close()
        deadline = t0 + 60
        while len(done) < len(self.nodes) and time.monotonic() < deadline:
            for n in self.nodes:
                if n not in done and self.cnames(n) <= base[n]:
                    done[n] = time.monotonic() - t0
        k1 = {n: ticks(p) for n, p in pids.items()}
        gone = self.poll("b").request("whereis", [names[-1]])
        time.sleep(0.1)
        w.stop()
        if len(done) < len(self.nodes):
            raise RuntimeError("names still there after 60 s: %r" % done)
        if gone is not None:
            raise RuntimeError("whereis %s on b: %r" % (names[-1], gone))
        dels = [(t - t0, n) for t, rv, n in w.events if n]
        return {"a": done["a"], "b": done["b"], "c": done["c"],
                "first_del": dels[0][0] if dels else float("nan"),
                "last_del": dels[-1][0] if dels else float("nan"),
                "txns": len(dels), "deleted": sum(n for _, n in dels),
                "cpu_ms": {n: (k1[n] - k0[n]) * 1000.0 / HZ for n in k0}}

    # --------------------------------------------------------------- burst

    def phase_burst(self):
        """Overload: one connection pipelines K registers at once; then
        -c 50 -P 16 register+unregister chains (800 at once).  Errors,
        and how long until a's deletes are done and etcd is quick again."""
        res = []
        for k in self.a.burst:
            lost0 = self.losses()
            c = cl.Client(self.nodes["a"].path, 60)
            t0 = time.monotonic()
            c.sock.sendall(b"".join(msgpack.packb(
                [0, i + 1, "register", ["burst%d.%05d" % (k, i), None,
                                        {"scope": "cluster"}]])
                for i in range(k)))
            errs = {}
            for _ in range(k):
                m = c._read(time.monotonic() + 60)
                while m[0] != 1:
                    m = c._read(time.monotonic() + 60)
                if m[2] is not None:
                    errs[m[2][0]] = errs.get(m[2][0], 0) + 1
            secs = time.monotonic() - t0
            c.close()
            settle = self.settle(300)
            lost = {n: x - lost0[n] for n, x in self.losses().items()
                    if x > lost0[n]}
            res.append({"k": k, "secs": secs, "errors": errs,
                        "settle": settle, "leases_lost": lost})
            log("burst of %d registers on one connection: answered in "
                "%.2f s, errors %r; settled %.1f s after the close; leases "
                "lost %r" % (k, secs, errs, settle, lost))
            self.wait_up()
        node = self.nodes["a"]
        for rnd in range(self.a.rounds):
            lost0 = self.losses()
            t0 = time.monotonic()
            out = self.run([BENCH, "-q", "--csv", "-s", node.path,
                            "--pid", str(node.proc.pid), "-c", "50", "-P",
                            "16", "-n", str(self.a.reg_tp_n), "--names", "0",
                            "--scope", "cluster", "-t", "register"])
            r = csv_rows(out)[0]
            secs = time.monotonic() - t0
            settle = self.settle(300)
            lost = {n: x - lost0[n] for n, x in self.losses().items()
                    if x > lost0[n]}
            res.append({"k": "-c 50 -P 16", "secs": secs,
                        "rate": float(r["ops_per_s"]),
                        "errors": int(r["errors"]), "settle": settle,
                        "leases_lost": lost})
            log("-c 50 -P 16 register chains: %s pairs/s, %d errors; "
                "settled %.1f s after; leases lost %r" % (
                    r["ops_per_s"], int(r["errors"]), settle, lost))
            self.wait_up()
        self.results["burst"] = res

    # ------------------------------------------------------------- summary

    def summary(self):
        R = self.results
        print()
        print("== results (medians of %d rounds; machine: %s, %d CPUs)" % (
            self.a.rounds, cpu_model(), os.cpu_count()))
        if "memory" in R:
            m = R["memory"]
            print("memory at %d names: b (caches them) +%.1f B per cluster "
                  "name; a (owns them) +%.1f B; b +%.1f B per local name"
                  % (m["names"], m["cached_B_per_name"],
                     m["owned_B_per_name"], m["local_B_per_name"]))
            if "heap_cached_B_per_name" in m:
                print("  heap in use (malloc_stats): b +%.1f B per cluster "
                      "name, a +%.1f B, b +%.1f B per local name" % (
                          m["heap_cached_B_per_name"],
                          m["heap_owned_B_per_name"],
                          m["heap_local_B_per_name"]))
            print("set-up: %d cluster registers in %.1f s (%.0f/s)"
                  % (m["names"], m["reg_secs"], m["reg_rate"]))
        if "whereis" in R:
            print("whereis on b, %d names: local vs cluster (from b's cache, "
                  "owners on a)" % self.a.names)
            print("| shape | local/s | cluster/s | cluster/local, median "
                  "of rounds (each round) | daemon µs/op local / cluster | "
                  "p50 µs local / cluster |")
            for r in R["whereis"]:
                print("| %s | %s | %s | %.2f× (%s) | %.3f / %.3f | "
                      "%.1f / %.1f |" % (
                          r["shape"], f0(r["local_ops"]),
                          f0(r["cluster_ops"]), r["ratio"],
                          ", ".join("%.2f" % x for x in r["ratio_rounds"]),
                          r["local_cpu"], r["cluster_cpu"], r["local_p50"],
                          r["cluster_p50"]))
        if "instr" in R:
            print("instructions per whereis (callgrind, node v; median of "
                  "rounds): local / cluster")
            for shape, d in R["instr"].items():
                print("  %-12s %6.0f / %6.0f  (%+.1f%%)" % (
                    shape, med(d["local"]), med(d["cluster"]),
                    100 * (med(d["cluster"]) / med(d["local"]) - 1)))
        if "big_drop" in R:
            print("a %d-name holder dropped: gone from b's cache after "
                  "%.2f s" % (R["big_drop"]["names"], R["big_drop"]["secs"]))
        if "register_latency" in R:
            L = R["register_latency"]
            print("sequential, one client (µs): p50 / p99")
            for k in ("register-cluster", "register-cluster:reg",
                      "register-cluster:unreg", "etcd-txn-pair",
                      "etcd-txn-create", "etcd-txn-delete",
                      "etcd-txn-pair+3w", "etcd-txn-create+3w",
                      "etcd-txn-delete+3w"):
                if k in L:
                    print("  %-24s %8.0f / %8.0f   (p50 per round: %s)%s"
                          % (k, L[k]["p50"], L[k]["p99"],
                             ", ".join("%.0f" % x for x in L[k]["p50_all"]),
                             "  %s %.0f µs CPU/pair" % (
                                 "daemon" if k.startswith("register")
                                 else "etcd-rtt itself", L[k]["cpu"])
                             if "cpu" in L[k] else ""))
        if "register_tp" in R:
            print("register+unregister pairs/s (median; p50 / p99 µs "
                  "per pair)")
            for k, d in R["register_tp"].items():
                print("  %-22s %8s  p50 %7.0f  p99 %7.0f  errors %s  %s "
                      "%.0f µs CPU/pair  (pairs/s per round: %s)" % (
                          k, f0(med(d["rate"])), med(d["p50"]),
                          med(d["p99"]), d["errors"],
                          "daemon" if k.startswith("procreg")
                          else "etcd-rtt itself", med(d["cpu"]),
                          ", ".join(f0(x) for x in d["rate"])))
        if "drop" in R:
            D = R["drop"]
            print("drop of %d cluster names (closing connection on a), ms, "
                  "median [all rounds]:" % self.a.drop_names)
            for k in ("b", "c", "a", "first_del", "last_del"):
                xs = [d[k] * 1e3 for d in D]
                print("  %-10s %7.0f  [%s]" % (k, med(xs), ", ".join(
                    "%.0f" % x for x in xs)))
            print("  delete txns per drop: %s" % [d["txns"] for d in D])
            for k in ("a", "b", "c", "etcd"):
                print("  CPU ms of %-4s during the drop: %s" % (
                    k, [round(d["cpu_ms"][k]) for d in D]))
        if "doom_txn" in R:
            for c, d in R["doom_txn"].items():
                print("bare delete txn of 63 fenced deletes (etcd-rtt "
                      "--batch 63 -c %d): p50 %.1f ms, p99 %.1f ms"
                      % (c, d["p50"] / 1e3, d["p99"] / 1e3))
        if "drop_alt" in R:
            print("bare etcd drop of %d keys, 3 watchers (etcd-rtt --drop), "
                  "ms until answered / seen by all watchers [rounds]:"
                  % self.a.drop_names)
            for how, d in R["drop_alt"].items():
                print("  %-7s %7.0f / %7.0f  [%s]" % (
                    how, med(d["answered"]), med(d["seen"]),
                    ", ".join("%.0f" % x for x in d["seen"])))
        if "burst" in R:
            for b in R["burst"]:
                if isinstance(b["k"], int):
                    print("burst of %d pipelined registers: %.2f s, errors "
                          "%r, settled %.1f s after, leases lost %r" % (
                              b["k"], b["secs"], b["errors"], b["settle"],
                              b["leases_lost"]))
                else:
                    print("register %s: %.0f pairs/s, %d errors, settled "
                          "%.1f s after, leases lost %r" % (
                              b["k"], b["rate"], b["errors"], b["settle"],
                              b["leases_lost"]))
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(R, f, indent=1, default=str)
        if self.a.out:
            print("raw output and results.json in", self.out)


def f0(x):
    return "{:,.0f}".format(x)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


class EtcdWatch(threading.Thread):
    """A watch on etcd's JSON gateway; events: (arrival time, revision,
    deletes in that revision)."""

    def __init__(self, member, prefix, start_rev):
        super().__init__(daemon=True)
        self.events = []
        self.conn = http.client.HTTPConnection("127.0.0.1",
                                               member.client_port,
                                               timeout=120)
        body = {"create_request": {
            "key": cl.b64(prefix), "range_end": cl.b64(cl.prefix_end(prefix)),
            "start_revision": str(start_rev)}}
        self.conn.request("POST", "/v3/watch", json.dumps(body),
                          {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.stopping = False

    def run(self):
        buf = b""
        try:
            while not self.stopping:
                data = self.resp.read1(1 << 16)
                if not data:
                    return
                t = time.monotonic()
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    res = json.loads(line).get("result", {})
                    byrev = {}
                    for ev in res.get("events", []):
                        rv = int(ev["kv"].get("mod_revision", 0))
                        byrev[rv] = byrev.get(rv, 0) + \
                            (ev.get("type") == "DELETE")
                    for rv in sorted(byrev):
                        self.events.append((t, rv, byrev[rv]))
        except (OSError, ValueError, http.client.HTTPException):
            pass

    def stop(self):
        self.stopping = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.join(5)
        self.conn.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only",
                   default="memory,whereis,instr,register,drop,burst",
                   help="comma list of phases (default all)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--names", type=int, default=100000,
                   help="names for memory and whereis (default 100000)")
    p.add_argument("--req-c1", type=int, default=50000)
    p.add_argument("--req-c50", type=int, default=500000)
    p.add_argument("--req-c50p16", type=int, default=2000000)
    p.add_argument("--instr-n", type=int, default=200000,
                   help="whereis per callgrind run at -c 50 -P 16 (a "
                   "tenth at -c 1 -P 1)")
    p.add_argument("--reg-n", type=int, default=2000,
                   help="sequential pairs per latency run (default 2000)")
    p.add_argument("--reg-tp-n", type=int, default=20000,
                   help="pairs per throughput run (default 20000)")
    p.add_argument("--drop-names", type=int, default=10000)
    p.add_argument("--burst", default="1000,2000,5000",
                   help="burst sizes (default 1000,2000,5000)")
    p.add_argument("--lease-ttl", type=int, default=10)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--etcd-dir", help="etcd's data under this directory "
                   "(default /dev/shm: no fsync cost)")
    p.add_argument("--out", help="keep raw output and results.json here")
    args = p.parse_args()
    args.burst = [int(x) for x in args.burst.split(",") if x]
    only = set(args.only.split(","))
    for f in (BENCH, RTT, os.environ["PROCREGD"]):
        if not os.access(f, os.X_OK):
            sys.exit("cluster.py: %s missing (make, and see "
                     "tests/bench/README.md)" % f)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(args)
    try:
        b.start()
        if only & {"memory", "whereis", "instr"}:
            b.phase_memory()
            if "whereis" in only:
                b.phase_whereis()
            if "instr" in only:
                b.phase_instr()
            b.release_whereis()
        if "register" in only:
            b.phase_register()
        if "drop" in only:
            b.phase_drop()
        if "burst" in only:
            b.phase_burst()
        b.summary()
    finally:
        b.stop()
        if not args.out:
            import shutil
            shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
