#!/usr/bin/python3
"""The metrics listener (--metrics ADDR:PORT): the page parses with the
Prometheus client's own parser (Debian's python3-prometheus-client), its
counters move with traffic by exactly what was sent, the sampled latency
histogram holds one request in 64, anything but GET /metrics is refused,
a scraper that never sends its request does not hold the daemon up, and
a bad address is refused at start.  Every wait is bounded; nothing is
timed."""
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
from prometheus_client.parser import text_string_to_metric_families

DAEMON = os.environ.get("PROCREGD", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "procregd"))
results = {"passed": 0, "failed": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(("ok     " if cond else "FAILED ") + what, flush=True)
    return cond


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0

    def call(self, method, *params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method,
                                         list(params)]))
        while True:
            for msg in self.unpacker:
                if msg[0] == 1 and msg[1] == self.msgid:
                    return msg[2], msg[3]
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.unpacker.feed(data)

    def close(self):
        self.sock.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port, path="/metrics", method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, r.getheader("Content-Type"), body


def samples(text):
    """{(name, frozenset(labels)): value} of every sample on the page."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(page, name, **labels):
    return page.get((name, frozenset(labels.items())))


def start(tmp):
    """procregd with --metrics on a free loopback port (another process
    may take a free port first: try again with another)."""
    path = os.path.join(tmp, "s.sock")
    for _ in range(5):
        port = free_port()
        d = subprocess.Popen([DAEMON, "-s", path, "--metrics",
                              "127.0.0.1:%d" % port],
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and d.poll() is None:
            try:
                Client(path).close()
                scrape(port)
                return d, path, port
            except OSError:
                time.sleep(0.02)
        d.kill()
        d.wait()
    return None, path, 0


def main():
    tmp = tempfile.mkdtemp(prefix="procreg-metrics.")
    d = None
    try:
        d, path, port = start(tmp)
        if not check("procregd starts with --metrics 127.0.0.1:PORT",
                     d is not None):
            return 1
        status, ctype, text = scrape(port)
        try:
            before = samples(text)
            parsed = True
        except Exception as e:          # the parser's verdict is the test
            print("       parse error:", e)
            parsed, before = False, {}
        check("GET /metrics answers 200 in the text exposition format, "
              "which the Prometheus client parses", status == 200 and
              ctype.startswith("text/plain; version=0.0.4") and parsed)
        check("the gauges are there and at rest (no names, no connection "
              "but the probe's, gone)",
              value(before, "procreg_names") == 0
              and value(before, "procreg_unsent_bytes") == 0)

        a, b = Client(path), Client(path)
        for i in range(5):
            a.call("register", "m/%d" % i)
        for i in range(640):
            a.call("whereis", "m/%d" % (i % 5))
        err, _ = a.call("register", "m/0")          # taken
        e2, _ = b.call("unregister", "m/1")         # not_owner
        e3, _ = a.call("no_such_method")            # unknown_method
        a.sock.sendall(msgpack.packb([0, 999, "whereis", []]))  # arity
        a.unpacker.feed(a.sock.recv(65536))
        next(a.unpacker)
        b.call("monitor", "m/4")
        a.call("evict", "m/3")
        status, _, text = scrape(port)
        after = samples(text)

        def grew(name, **labels):
            return (value(after, name, **labels) or 0) - \
                (value(before, name, **labels) or 0)
        check("requests_total counts each method exactly (5 register + 1, "
              "640 whereis, 1 unregister, 1 monitor, 1 evict)",
              grew("procreg_requests_total", method="register") == 6
              and grew("procreg_requests_total", method="whereis") == 640
              and grew("procreg_requests_total", method="unregister") == 1
              and grew("procreg_requests_total", method="monitor") == 1
              and grew("procreg_requests_total", method="evict") == 1)
        check("errors_total by code: taken, not_owner, unknown_method, "
              "bad_request one each", err is not None and e2 is not None
              and e3 is not None
              and grew("procreg_errors_total", code="taken") == 1
              and grew("procreg_errors_total", code="not_owner") == 1
              and grew("procreg_errors_total", code="unknown_method") == 1
              and grew("procreg_errors_total", code="bad_request") == 1)
        check("bad_requests_total counts the two refused before a method "
              "ran", grew("procreg_bad_requests_total") == 2)
        check("evictions_total counts the eviction",
              grew("procreg_evictions_total") == 1)
        check("the gauges follow: 4 names, 1 monitor, 2 connections",
              value(after, "procreg_names") == 4
              and value(after, "procreg_monitors") == 1
              and value(after, "procreg_connections") == 2)
        reqs = sum(v for (n, l), v in after.items()
                   if n == "procreg_requests_total")
        timed = sum(v for (n, l), v in after.items()
                    if n == "procreg_request_duration_seconds_count")
        check("the latency histogram holds one request in 64 (%d of %d)" % (
            timed, reqs), timed == reqs // 64 and timed >= 10)
        ws = [v for (n, l), v in after.items()
              if n == "procreg_request_duration_seconds_bucket"
              and dict(l) == {"method": "whereis", "le": "+Inf"}]
        check("and its buckets add up to its count",
              ws and ws[0] == value(after, "procreg_request_duration_seconds"
                                    "_count", method="whereis"))
        check("anything but /metrics is 404", scrape(port, "/x")[0] == 404)
        check("a POST is refused", scrape(port, method="POST")[0] in (
            405, 501))

        # A scraper that connects and never sends its request.
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        err, entry = a.call("whereis", "m/0")
        check("a scraper that says nothing does not hold the daemon up",
              err is None and entry is not None)
        check("nor other scrapers", scrape(port)[0] == 200)
        idle.close()
        a.close()
        b.close()

        r = subprocess.run([DAEMON, "-s", os.path.join(tmp, "x.sock"),
                            "--metrics", "localhost:9470"],
                           capture_output=True, text=True, timeout=10)
        check("a name instead of a numeric address is refused (exit 2): "
              "resolving it could block the loop", r.returncode == 2
              and "numeric" in r.stderr)
        r = subprocess.run([DAEMON, "-s", os.path.join(tmp, "x.sock"),
                            "--metrics", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        check("port 0 is refused (exit 2)", r.returncode == 2)
        for bad in ("127.0.0.1: 80", "127.0.0.1:+80", "127.0.0.1:80x",
                    "[::1]80", "127.0.0.1"):
            r = subprocess.run([DAEMON, "-s", os.path.join(tmp, "x.sock"),
                                "--metrics", bad], capture_output=True,
                               text=True, timeout=10)
            check("--metrics %r is refused (exit 2)" % bad,
                  r.returncode == 2)
        d.terminate()
        check("the daemon exits 0", d.wait(timeout=10) == 0)
        d = None
    finally:
        if d is not None:
            d.kill()
            d.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("metrics: %d passed, %d failed" % (results["passed"],
                                             results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
