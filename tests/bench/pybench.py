#!/usr/bin/python3
"""pybench.py: the Python client (src/python/procreg) against redis-py.

whereis round trips at depth 1 and pipelined, with the synchronous and
the asyncio clients, next to redis-py GET (Debian's python3-redis)
against redis-server on the same machine, same process shape: one client
process, one connection, a Unix socket for both servers.  The script
starts its own procregd and redis-server on private sockets and stops
them.  Servers are pinned to SERVER_CPU, this process to CLIENT_CPU.

    /usr/bin/python3 tests/bench/pybench.py [N]     (default N=50000)

Install redis with `sh tests/install-debs.sh redis-server python3-redis`.
Not a test: prints operations per second."""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src", "python"))
import procreg  # noqa: E402
import procreg.aio  # noqa: E402

import redis  # noqa: E402
import redis.asyncio  # noqa: E402

DAEMON = os.environ.get("PROCREGD", os.path.join(HERE, "..", "..",
                                                 "procregd"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
DEPTH = int(os.environ.get("DEPTH", "16"))
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = int(os.environ.get("CLIENT_CPU", "1"))
REPEAT = int(os.environ.get("REPEAT", "3"))


def wait_socket(path):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise SystemExit("no server at " + path)


def best(fn):
    """Best of REPEAT runs, in operations per second."""
    rates = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn()
        rates.append(N / (time.perf_counter() - t0))
    return max(rates)


def abest(coro_fn):
    async def run():
        rates = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            await coro_fn()
            rates.append(N / (time.perf_counter() - t0))
        return max(rates)
    return run


def main():
    tmp = tempfile.mkdtemp(prefix="pybench.")
    ppath = os.path.join(tmp, "procreg.sock")
    rpath = os.path.join(tmp, "redis.sock")
    pin = ["taskset", "-c", SERVER_CPU] if shutil.which("taskset") else []
    procs = [
        subprocess.Popen(pin + [DAEMON, "-s", ppath],
                         stderr=subprocess.DEVNULL),
        subprocess.Popen(pin + ["redis-server", "--port", "0",
                                "--unixsocket", rpath, "--save", "",
                                "--appendonly", "no", "--dir", tmp],
                         stdout=subprocess.DEVNULL),
    ]
    try:
        with_cpu = hasattr(os, "sched_setaffinity") and os.cpu_count() > 1
        if with_cpu:
            os.sched_setaffinity(0, {CLIENT_CPU})
        wait_socket(ppath)
        wait_socket(rpath)
        pc = procreg.connect(ppath)
        pc.register("bench/key", "value")
        rc = redis.Redis(unix_socket_path=rpath)
        rc.set("bench/key", "value")
        assert pc.whereis("bench/key").value == "value"
        assert rc.get("bench/key") == b"value"
        rows = []

        def p1():
            w = pc.whereis
            for _ in range(N):
                w("bench/key")

        def r1():
            g = rc.get
            for _ in range(N):
                g("bench/key")

        def pp():
            for _ in range(N // DEPTH):
                p = pc.pipeline()
                for _ in range(DEPTH):
                    p.whereis("bench/key")
                p.execute()

        def rp():
            for _ in range(N // DEPTH):
                p = rc.pipeline(transaction=False)
                for _ in range(DEPTH):
                    p.get("bench/key")
                p.execute()
        rows.append(("sync, depth 1", best(p1), best(r1)))
        rows.append(("sync, pipelined %d" % DEPTH, best(pp), best(rp)))

        async def aio_rows():
            ac = await procreg.aio.connect(ppath)
            ar = redis.asyncio.Redis(unix_socket_path=rpath)
            await ar.get("bench/key")

            async def a1():
                w = ac.whereis
                for _ in range(N):
                    await w("bench/key")

            async def ra1():
                g = ar.get
                for _ in range(N):
                    await g("bench/key")

            async def ap():
                for _ in range(N // DEPTH):
                    p = ac.pipeline()
                    for _ in range(DEPTH):
                        p.whereis("bench/key")
                    await p.execute()

            async def rap():
                for _ in range(N // DEPTH):
                    p = ar.pipeline(transaction=False)
                    for _ in range(DEPTH):
                        p.get("bench/key")
                    await p.execute()

            async def ag():
                for _ in range(N // DEPTH):
                    await asyncio.gather(*(ac.whereis("bench/key")
                                           for _ in range(DEPTH)))

            async def rag():
                # One connection, as for procreg: a pool of one would
                # serialise; redis-py's gather opens DEPTH connections.
                for _ in range(N // DEPTH):
                    await asyncio.gather(*(ar.get("bench/key")
                                           for _ in range(DEPTH)))
            out = [("asyncio, depth 1", await abest(a1)(), await abest(ra1)()),
                   ("asyncio, pipelined %d" % DEPTH, await abest(ap)(),
                    await abest(rap)()),
                   ("asyncio, gather %d" % DEPTH, await abest(ag)(),
                    await abest(rag)())]
            await ac.close()
            await ar.close()
            return out
        rows += asyncio.run(aio_rows())
        print("N=%d, best of %d, client on CPU %s, servers on CPU %s"
              % (N, REPEAT, CLIENT_CPU if with_cpu else "any", SERVER_CPU))
        print("%-22s %14s %14s %8s" % ("shape", "procreg op/s",
                                       "redis-py op/s", "ratio"))
        for name, p, r in rows:
            print("%-22s %14.0f %14.0f %7.2fx" % (name, p, r, p / r))
        pc.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
