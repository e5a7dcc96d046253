#!/usr/bin/python3
"""A chat room as a named process: the Python port of the room of
src/examples/chat.c, and a drop-in for it (``chat join`` and ``chat say``
talk to it unchanged).

The room joins the group ``room/NAME`` (where every line is published as
{"from": USER, "text": TEXT}), keeps the last 50 lines, and registers
the name ``room/NAME``, answering the call "get_messages" with them.

    $ procregd -s /tmp/chat.sock &
    $ PROCREG_SOCKET=/tmp/chat.sock python3 src/python/examples/room.py lobby
    $ PROCREG_SOCKET=/tmp/chat.sock procregctl publish room/lobby \\
          '{"from": "alice", "text": "hi"}'
    $ PROCREG_SOCKET=/tmp/chat.sock procregctl call room/lobby get_messages
"""
import os
import sys
import time
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
import procreg  # noqa: E402

HISTORY_MAX = 50


def main(argv):
    if len(argv) != 2:
        print("usage: room.py ROOM", file=sys.stderr)
        return 2
    room = argv[1]
    name = "room/" + room
    history = deque(maxlen=HISTORY_MAX)
    client = procreg.connect(auto_reconnect=True, label=name)
    # A member of its own group first: it hears every line from before
    # anyone can find the room by its name.
    client.join(name)
    value = {"room": room, "started": int(time.time() * 1000)}
    # The old room's name goes when procregd sees its connection close,
    # which may not have happened yet: try for two seconds.
    for attempt in range(40):
        try:
            @client.serve(name, value=value)
            def get_messages(payload):
                if payload != "get_messages":
                    raise procreg.RemoteError(
                        "this room answers get_messages only",
                        code="unknown_call")
                return list(history)
            break
        except procreg.Taken:
            time.sleep(0.05)
    else:
        print("room %s: %s is taken" % (room, name), file=sys.stderr)
        return 1
    entry = client.whereis(name)
    print("room %s: registered %s (conn %d, pid %d)"
          % (room, name, entry.conn, entry.pid), flush=True)
    for ev in client.events():
        if isinstance(ev, procreg.Publish) and ev.group == name:
            p = ev.payload
            if (isinstance(p, dict) and isinstance(p.get("from"), str)
                    and isinstance(p.get("text"), str)):
                history.append({"from": p["from"], "text": p["text"]})
        elif isinstance(ev, procreg.Shutdown):
            print("room %s: the daemon is stopping" % room, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(130)
