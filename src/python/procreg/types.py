"""Data types of the procreg client: entries, results and notifications.

All are dataclasses.  Values and payloads are plain Python objects as
msgpack decodes them (str and bytes stay distinct; maps become dicts).
Times are Unix epoch milliseconds, as on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

__all__ = [
    "Entry", "Member", "Queued", "Hello", "Stats", "Keys", "PublishResult",
    "Message", "Call", "Publish", "Down", "Acquired", "Lost", "SubEvent",
    "Overflow", "Restarted", "ErrorNotice", "Shutdown", "Reconnected",
    "Unknown", "Notification", "Target", "Hold", "Node", "Place",
]

#: A target of send, call and monitor: a name (str) or a connection id.
Target = Union[str, int]


@dataclass(slots=True)
class Entry:
    """One registration (PROTOCOL.md section 3, "Entry").

    Protocol 3 (cluster mode): ``scope`` is ``"local"`` (this daemon's
    own name; every name of an older daemon) or ``"cluster"`` (a name held
    in the cluster's etcd); a cluster entry's ``node`` is the node its
    owner is connected to (``conn``, ``pid``, ``uid`` and ``gid`` are
    that node's; ``gen`` is etcd's create revision), and ``stale`` is
    true when the daemon answered from its cache, which may lag etcd
    (``whereis(..., consistent=True)`` asks etcd).  A local entry's
    ``node`` is None."""
    name: str
    conn: int
    pid: int
    uid: int
    gid: int
    value: Any
    since: int
    gen: int
    scope: str = "local"
    node: Optional[str] = None
    stale: bool = False

    @classmethod
    def from_wire(cls, d: Dict[str, Any]) -> "Entry":
        """Build from the daemon's map (unknown keys are ignored)."""
        return cls(d["name"], d["conn"], d["pid"], d["uid"], d["gid"],
                   d.get("value"), d["since"], d["gen"],
                   d.get("scope", "local"), d.get("node"),
                   bool(d.get("stale", False)))


@dataclass(slots=True)
class Member:
    """One group membership (PROTOCOL.md section 3, "Member entry")."""
    group: str
    conn: int
    pid: int
    uid: int
    gid: int
    value: Any
    since: int
    gen: int

    @classmethod
    def from_wire(cls, d: Dict[str, Any]) -> "Member":
        """Build from the daemon's map (unknown keys are ignored)."""
        return cls(d["group"], d["conn"], d["pid"], d["uid"], d["gid"],
                   d.get("value"), d["since"], d["gen"])


@dataclass(slots=True)
class Queued:
    """``register(..., queue=True)`` on a taken name: we wait in its
    queue at ``position`` (1: next in line); an :class:`Acquired` comes
    when the name passes to us."""
    name: str
    position: int


@dataclass(slots=True)
class Hello:
    """The daemon's answer to ``hello``; ``node``: its node name when it
    runs in cluster mode (protocol 3, ``--etcd``), else None."""
    server: str
    version: str
    protocol: int
    conn: int
    boot: str
    max_message: int
    node: Optional[str] = None


@dataclass(slots=True)
class Place:
    """A place in a cluster name's line (protocol 3, ``queue``): the
    waiting connection's node and id (a local name's line is of plain
    connection ids)."""
    node: Optional[str]
    conn: int


@dataclass(slots=True)
class Node:
    """A node of the cluster (protocol 3, ``nodes``): its name, when it
    joined (``since``, epoch ms), the peer address it published, and
    ``self``: it is the daemon this client talks to."""
    name: str
    since: int
    address: str
    self: bool

    @classmethod
    def from_wire(cls, d: Dict[str, Any]) -> "Node":
        """Build from the daemon's map (unknown keys are ignored)."""
        return cls(d["name"], d["since"], d.get("address", ""),
                   bool(d.get("self", False)))


@dataclass(slots=True)
class Stats:
    """The daemon's counters and gauges (PROTOCOL.md section 4.9); keys
    of a later protocol are in ``extra``."""
    connections: int = 0
    names: int = 0
    monitors: int = 0
    requests: int = 0
    messages: int = 0
    downs: int = 0
    notifications_ignored: int = 0
    connections_total: int = 0
    uptime_ms: int = 0
    groups: int = 0
    members: int = 0
    calls: int = 0
    awaits: int = 0
    subscriptions: int = 0
    seq: int = 0
    replies_late: int = 0
    draining: int = 0
    #: Protocol 3 with ``--etcd``: the ``cluster`` map (node, state,
    #: etcd, lease_ttl, names, nodes, revision); None without.
    cluster: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Keys:
    """What a connection owns: its names and its groups, sorted."""
    names: List[str]
    groups: List[str]


@dataclass(slots=True)
class PublishResult:
    """``publish``: how many members got it, and the conn ids of the
    members whose buffer was full (they did not)."""
    delivered: int
    busy: List[int]


@dataclass(slots=True)
class Hold:
    """What ``hold`` yields (both clients): the held name and its entry
    (``entry.gen`` fences actions to this ownership)."""
    name: str
    entry: Entry


# Notifications ------------------------------------------------------------

@dataclass(slots=True)
class Message:
    """A ``send`` to one of our names (or to our connection id)."""
    target: Target
    sender: int
    payload: Any


@dataclass(slots=True)
class Call:
    """A ``call`` to one of our names (or to us): answer it with
    ``client.reply(call, result)`` (or ``error=``)."""
    call_id: int
    target: Target
    caller: int
    payload: Any


@dataclass(slots=True)
class Publish:
    """A ``publish`` to a group we are a member of."""
    group: str
    sender: int
    payload: Any


@dataclass(slots=True)
class Down:
    """One of our monitors fired: ``reason`` is ``"unregistered"``,
    ``"disconnected"``, ``"noproc"``, ``"evicted"``, ``"replaced"`` or
    (protocol 3) ``"nodedown"``: a cluster name's owner was on a node
    that lost its lease."""
    ref: int
    target: Target
    reason: str


@dataclass(slots=True)
class Acquired:
    """A name we queued for is ours now (its new entry and gen)."""
    name: str
    entry: Entry


@dataclass(slots=True)
class Lost:
    """A name we owned is no longer ours: ``"replaced"``, ``"evicted"``,
    ``"nodedown"`` (a cluster name, and our daemon's node lost its
    lease), or (after an automatic reconnect) ``"disconnected"`` when
    another client got it first and we are only queued again.  After
    ``"evicted"`` and ``"nodedown"`` auto-reconnect forgets the name."""
    name: str
    reason: str


@dataclass(slots=True)
class SubEvent:
    """A change under a subscription (PROTOCOL.md section 4.22).

    ``kind`` is ``"registered"``, ``"unregistered"``, ``"updated"``,
    ``"handover"``, ``"joined"`` or ``"left"`` (or one of a later
    protocol: then only ``payload`` is set).  ``entry`` for registered,
    updated and handover; ``member`` for joined and left; ``reason``
    for unregistered."""
    sub: int
    seq: int
    kind: str
    name: Optional[str]
    payload: Any
    entry: Optional[Entry] = None
    member: Optional[Member] = None
    reason: Optional[str] = None


@dataclass(slots=True)
class Overflow:
    """A subscription ended: we fell behind (or the client reconnected to
    the same daemon).  Subscribe again with ``since=seq``."""
    sub: int
    seq: int


@dataclass(slots=True)
class Restarted:
    """A subscription ended because the daemon restarted (automatic
    reconnect): its seq numbers are gone; subscribe afresh without
    ``since`` and forget what the subscription showed."""
    sub: int
    seq: int


@dataclass(slots=True)
class ErrorNotice:
    """The daemon's ``error`` notification (bad input, or a refused
    connection)."""
    code: str
    message: str


@dataclass(slots=True)
class Shutdown:
    """The daemon is stopping (``"terminated"``, ``"interrupted"``)."""
    reason: str


@dataclass(slots=True)
class Reconnected:
    """Local: an automatic reconnect succeeded.  ``restarted``: the
    daemon is a new one (its ``boot`` changed).  ``lost_names`` and
    ``lost_groups``: what could not be registered or joined again."""
    conn: int
    boot: str
    restarted: bool
    lost_names: List[str]
    lost_groups: List[str]


@dataclass(slots=True)
class Unknown:
    """A notification of a later protocol, as received."""
    method: str
    params: List[Any]


Notification = Union[Message, Call, Publish, Down, Acquired, Lost, SubEvent,
                     Overflow, Restarted, ErrorNotice, Shutdown, Reconnected,
                     Unknown]
