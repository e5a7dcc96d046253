#!/usr/bin/python3
"""Writes the fuzz seed corpus from proto/PROTOCOL.md's worked examples:
one seed per example block (so every method and notification of the spec
is there as valid input) and one for the whole session, in the chunk
format of fuzz_procregd.c.  Run: tests/fuzz/make_seeds.py [SPEC] [DIR]."""
import os
import re
import sys

spec = sys.argv[1] if len(sys.argv) > 1 else "proto/PROTOCOL.md"
out = sys.argv[2] if len(sys.argv) > 2 else "tests/fuzz/corpus"


def chunks(client, op, data):
    """Encode writes of data for a client as chunks of at most 255 bytes."""
    res = bytearray()
    if not data:
        return bytes([(op << 2) | client, 0])
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        res += bytes([(op << 2) | client, len(part)]) + part
    return bytes(res)


blocks, cur, inblock = [], bytearray(), False
for line in open(spec, encoding="utf-8"):
    if line.startswith("```"):
        if inblock and cur:
            blocks.append(bytes(cur))
        inblock, cur = line.startswith("```msgpack"), bytearray()
        continue
    if not inblock:
        continue
    m = re.match(r"^([A-Z])> ([0-9a-f ]+)$", line.rstrip("\n"))
    if m:
        cur += chunks((ord(m.group(1)) - ord("A")) % 4, 0,
                      bytes.fromhex(m.group(2).replace(" ", "")))
    m = re.match(r"^([A-Z]) close$", line.rstrip("\n"))
    if m:
        cur += chunks((ord(m.group(1)) - ord("A")) % 4, 2, b"")

os.makedirs(out, exist_ok=True)
for i, b in enumerate(blocks):
    with open(os.path.join(out, "spec-%02d" % i), "wb") as f:
        f.write(b)
with open(os.path.join(out, "spec-session"), "wb") as f:
    f.write(b"".join(blocks))
print("%d seeds in %s" % (len(blocks) + 1, out))
