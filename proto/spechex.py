#!/usr/bin/python3
"""Rewrite the hex of every X>/X< line in PROTOCOL.md from its # comment."""
import re, sys, msgpack
p = sys.argv[1]
lines = open(p).read().split('\n')
out = []
inblock = False
i = 0
while i < len(lines):
    l = lines[i]
    if l.startswith('```msgpack'):
        inblock = True
    elif l.startswith('```'):
        inblock = False
    m = re.match(r'^([A-Z])([<>]) (.*)$', l) if inblock else None
    if m and i + 1 < len(lines) and lines[i+1].lstrip().startswith('# '):
        lit = lines[i+1].lstrip()[2:]
        v = eval(lit, {'nil': None, 'true': True, 'false': False})
        b = msgpack.packb(v, use_bin_type=True)
        out.append('%s%s %s' % (m.group(1), m.group(2), ' '.join('%02x' % x for x in b)))
    else:
        out.append(l)
    i += 1
open(p, 'w').write('\n'.join(out))
