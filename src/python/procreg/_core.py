"""The I/O-free heart of the client, shared by the synchronous and the
asyncio clients: socket path resolution, request encoding, response and
notification decoding, and auto-reconnect's bookkeeping (what was
registered, joined, monitored and subscribed to, and the translation of
refs, call ids and subscription ids across reconnects), with the
restore plan as a generator of requests that either client drives.
"""
from __future__ import annotations

import os
import stat
from typing import (Any, Callable, Dict, Generator, List, Optional, Tuple)

import msgpack

from . import errors
from .errors import ConnectError, NotFound, ProtocolError
from .types import (Acquired, Call, Down, Entry, ErrorNotice, Hello, Keys,
                    Lost, Member, Message, Node, Notification, Overflow,
                    Place, Publish,
                    PublishResult, Queued, Reconnected, Restarted, Shutdown,
                    Stats, SubEvent, Unknown)

#: Default time limit (seconds) of a request's answer.
DEFAULT_TIMEOUT = 10.0
#: The most bytes buffered for one incoming object: the daemon's default
#: max_message is 1 MiB, and objects may exceed it by the framing.
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
RECONNECT_MIN = 0.05
RECONNECT_MAX = 2.0
CALLS_MAX = 65536

_MISSING = object()


def default_socket_path() -> str:
    """The daemon's socket path, resolved as libprocreg and procregd do:
    ``$PROCREG_SOCKET``, then ``$XDG_RUNTIME_DIR/procreg.sock``, then
    ``/run/procreg/procreg.sock`` for root or ``/tmp/procreg-UID/
    procreg.sock``, whose directory must then be the user's own with mode
    0700 (else :class:`~procreg.errors.ConnectError`)."""
    env = os.environ.get("PROCREG_SOCKET")
    if env:
        return env
    env = os.environ.get("XDG_RUNTIME_DIR")
    if env:
        return env + "/procreg.sock"
    uid = os.getuid()
    if uid == 0:
        return "/run/procreg/procreg.sock"
    d = "/tmp/procreg-%d" % uid
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return d + "/procreg.sock"
    except OSError as e:
        raise ConnectError("%s: %s" % (d, e)) from None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != uid
            or st.st_mode & 0o077):
        raise ConnectError("%s is not owned by uid %d with mode 0700: "
                           "refusing to use it" % (d, uid))
    return d + "/procreg.sock"


def make_unpacker(max_message: int) -> msgpack.Unpacker:
    """An unpacker that never buffers more than ``max_message`` bytes and
    refuses any declared length or count past it (msgpack derives every
    max_*_len from max_buffer_size)."""
    return msgpack.Unpacker(raw=False, strict_map_key=False,
                            max_buffer_size=max_message)


def seconds_to_ms(timeout: Optional[float], default_ms: int) -> int:
    """A timeout in seconds as the protocol's milliseconds (None: the
    daemon's default)."""
    if timeout is None:
        return default_ms
    return max(0, min(86400000, int(round(timeout * 1000))))


class _Held:
    __slots__ = ("has_value", "value", "opts", "waiting")

    def __init__(self, has_value: bool, value: Any,
                 opts: Optional[Dict[str, Any]], waiting: bool) -> None:
        self.has_value = has_value
        self.value = value
        self.opts = opts
        self.waiting = waiting


class _Sub:
    __slots__ = ("server", "last_seq", "sink", "cluster")

    def __init__(self, server: int, last_seq: int, sink: Any,
                 cluster: bool = False) -> None:
        self.server = server
        self.last_seq = last_seq
        self.sink = sink
        # Scope cluster: its seqs are etcd's revisions, which outlive the
        # daemon, so a reconnect ends it with Overflow even after a
        # restart.
        self.cluster = cluster


Hook = Optional[Callable[[Any], Any]]
Step = Tuple[str, List[Any], Hook]


class Core:
    """Protocol state of one client (not thread-safe; no I/O)."""

    def __init__(self, auto_reconnect: bool) -> None:
        self.auto = auto_reconnect
        self.msgid = 0
        self.pending: Dict[int, Hook] = {}
        self.packer = msgpack.Packer()
        self._methods: Dict[str, bytes] = {}
        self.hello: Optional[Hello] = None
        # auto_reconnect's memory (filled only when auto is set).
        self.names: Dict[str, _Held] = {}
        self.groups: Dict[str, _Held] = {}
        self.mons: Dict[int, List[Any]] = {}       # user ref -> [target, server ref]
        self.mons_srv: Dict[int, int] = {}         # server ref -> user ref
        self.next_ref = 0
        self.calls: Dict[int, int] = {}            # user call id -> server's
        self.next_call = 0
        # Subscriptions (always: they carry the sink events go to).
        self.subs: Dict[int, _Sub] = {}
        self.subs_srv: Dict[int, int] = {}
        self.next_sub = 0

    # -- requests ---------------------------------------------------------
    def pack(self, method: str, params: List[Any], hook: Hook) -> Tuple[int, bytes]:
        """Encode a request; its hook runs when the response is parsed."""
        msgid = self.msgid = (self.msgid + 1) & 0xFFFFFFFF
        m = self._methods.get(method)
        if m is None:
            m = self._methods[method] = self.packer.pack(method)
        self.pending[msgid] = hook
        return msgid, (b"\x94\x00\xce" + msgid.to_bytes(4, "big") + m
                       + self.packer.pack(params))

    def on_response(self, msgid: Any, error: Any, result: Any) -> Tuple[Any, Any, bool]:
        """(msgid, value or exception, is_error); msgid None: unknown."""
        hook = self.pending.pop(msgid, _MISSING)
        if hook is _MISSING:
            return None, None, False
        if error is not None:
            return msgid, errors.from_wire(error), True
        if hook is None:
            return msgid, result, False
        try:
            return msgid, hook(result), False
        except (KeyError, TypeError, ValueError, IndexError,
                AttributeError) as e:
            return msgid, ProtocolError("malformed result: %r" % (e,)), True

    def forget_pending(self) -> None:
        """The connection is gone: no response will come."""
        self.pending.clear()

    # -- hooks (bookkeeping at parse time, before any later push) ---------
    def hook_hello(self, r: Dict[str, Any]) -> Hello:
        h = Hello(r["server"], r["version"], r["protocol"], r["conn"],
                  r["boot"], r["max_message"], r.get("node"))
        self.hello = h
        return h

    def hook_register(self, name: str, has_value: bool, value: Any,
                      opts: Optional[Dict[str, Any]]) -> Hook:
        def hook(r: Dict[str, Any]) -> Any:
            if "queued" in r:
                out: Any = Queued(name, r["queued"])
            else:
                out = Entry.from_wire(r)
            if self.auto:
                self.names[name] = _Held(has_value, value, opts,
                                         isinstance(out, Queued))
            return out
        return hook

    def hook_register_many(self, items: List[List[Any]]) -> Hook:
        def hook(r: List[Any]) -> List[Entry]:
            out = [Entry.from_wire(d) for d in r]
            if self.auto:
                for it in items:
                    self.names[it[0]] = _Held(len(it) > 1, it[1] if
                                              len(it) > 1 else None, None,
                                              False)
            return out
        return hook

    def hook_forget_name(self, name: str) -> Hook:
        def hook(r: Any) -> Any:
            self.names.pop(name, None)
            return r
        return hook

    def hook_update(self, name: str, value: Any) -> Hook:
        def hook(r: Dict[str, Any]) -> Entry:
            h = self.names.get(name)
            if h is not None:
                h.has_value, h.value = True, value
            return Entry.from_wire(r)
        return hook

    def hook_join(self, group: str, has_value: bool, value: Any) -> Hook:
        def hook(r: Dict[str, Any]) -> Member:
            if self.auto:
                self.groups[group] = _Held(has_value, value, None, False)
            return Member.from_wire(r)
        return hook

    def hook_leave(self, group: str) -> Hook:
        def hook(r: Any) -> Any:
            self.groups.pop(group, None)
            return r
        return hook

    def hook_monitor(self, target: Any) -> Hook:
        if not self.auto:
            return None

        def hook(sref: int) -> int:
            self.next_ref += 1
            self.mons[self.next_ref] = [target, sref]
            self.mons_srv[sref] = self.next_ref
            return self.next_ref
        return hook

    def demonitor_ref(self, ref: int) -> Optional[int]:
        """The daemon's ref for the caller's (None: not active here)."""
        if not self.auto:
            return ref
        m = self.mons.get(ref)
        return None if m is None or m[1] is None else m[1]

    def hook_demonitor(self, ref: int) -> Hook:
        if not self.auto:
            return None

        def hook(r: Any) -> Any:
            m = self.mons.pop(ref, None)
            if m is not None:
                self.mons_srv.pop(m[1], None)
            return r
        return hook

    def reply_id(self, call_id: int) -> Optional[int]:
        """The daemon's call id for the caller's (None: not pending on
        this connection)."""
        if not self.auto:
            return call_id
        return self.calls.pop(call_id, None)

    def hook_subscribe(self, since: Optional[int], sink: Any,
                       cluster: bool = False) -> Hook:
        def hook(r: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
            server = r["sub"]
            if self.auto:
                self.next_sub += 1
                user = self.next_sub
            else:
                user = server
            last = since if since is not None and not r.get("gap") else r["seq"]
            self.subs[user] = _Sub(server, last, sink, cluster)
            self.subs_srv[server] = user
            return user, r
        return hook

    def unsubscribe_id(self, sub: int) -> Optional[int]:
        s = self.subs.get(sub)
        return None if s is None else s.server

    def end_sub(self, sub: int) -> None:
        s = self.subs.pop(sub, None)
        if s is not None:
            self.subs_srv.pop(s.server, None)

    # -- notifications ----------------------------------------------------
    def on_push(self, method: Any, p: Any) -> Optional[Notification]:
        """The notification for a push, or None when it went to a
        subscription's sink (or concerns a subscription no longer held)."""
        try:
            if method == "message":
                return Message(p[0], p[1], p[2])
            if method == "call":
                cid = p[0]
                if self.auto:
                    self.next_call += 1
                    self.calls[self.next_call] = cid
                    if len(self.calls) > CALLS_MAX:
                        del self.calls[next(iter(self.calls))]
                    cid = self.next_call
                return Call(cid, p[1], p[2], p[3])
            if method == "publish":
                return Publish(p[0], p[1], p[2])
            if method == "down":
                ref = p[0]
                if self.auto:
                    u = self.mons_srv.pop(ref, None)
                    if u is not None:
                        self.mons.pop(u, None)
                        ref = u
                return Down(ref, p[1], p[2])
            if method == "event":
                return self._sub_event(p)
            if method == "overflow":
                user = self.subs_srv.get(p[0])
                if user is None:
                    return None
                s = self.subs[user]
                s.last_seq = p[1]
                self.end_sub(user)
                s.sink.put(Overflow(user, p[1]))
                return None
            if method == "acquired":
                e = Entry.from_wire(p[1])
                h = self.names.get(p[0])
                if h is not None:
                    h.waiting = False
                return Acquired(p[0], e)
            if method == "lost":
                name, reason = p[0], p[1]
                h = self.names.get(name)
                if h is not None:
                    if h.opts and h.opts.get("queue") and reason == "replaced":
                        h.waiting = True
                    else:
                        del self.names[name]
                return Lost(name, reason)
            if method == "error":
                return ErrorNotice(p[0], p[1])
            if method == "shutdown":
                return Shutdown(p[0])
        except (IndexError, KeyError, TypeError, ValueError):
            pass
        return Unknown(method, p)

    def _sub_event(self, p: Any) -> None:
        user = self.subs_srv.get(p[0])
        if user is None:
            return None
        s = self.subs[user]
        seq, kind, payload = p[1], p[2], p[3]
        s.last_seq = seq
        ev = SubEvent(user, seq, kind, None, payload)
        if kind in ("registered", "updated", "handover"):
            ev.entry = Entry.from_wire(payload)
            ev.name = ev.entry.name
        elif kind in ("joined", "left"):
            ev.member = Member.from_wire(payload)
            ev.name = ev.member.group
        elif kind == "unregistered":
            ev.name, ev.reason = payload[0], payload[1]
        s.sink.put(ev)
        return None

    # -- auto-reconnect ---------------------------------------------------
    def lost_connection(self) -> None:
        """The connection went away: its pending requests will not be
        answered and its calls cannot be replied to."""
        self.pending.clear()
        self.calls.clear()

    def restore(self, old_boot: Optional[str]) -> Generator[Step, Tuple[Optional[Exception], Any], List[Notification]]:
        """Register, join and monitor again on a new connection (after
        hello); yields requests, receives (exception, result), returns
        the notifications to hand out."""
        out: List[Notification] = []
        same = self.hello is not None and old_boot == self.hello.boot
        for user in list(self.subs):
            s = self.subs[user]
            self.end_sub(user)
            s.sink.put((Overflow if same or s.cluster else Restarted)(
                user, s.last_seq))
        self.calls.clear()
        lost_names: List[str] = []
        lost_groups: List[str] = []
        for name in list(self.names):
            h = self.names.get(name)
            if h is None:
                continue
            params: List[Any] = [name]
            if h.has_value or h.opts:
                params.append(h.value)
            if h.opts:
                # The same options: a cluster name comes back as one.
                params.append(h.opts)
            exc, res = yield ("register", params, None)
            if name not in self.names:
                continue
            if exc is not None:
                # Taken meanwhile (or, a cluster name, Unavailable: the
                # new daemon's node has no lease yet).
                lost_names.append(name)
                del self.names[name]
                continue
            if not (h.opts and h.opts.get("queue")):
                continue
            if isinstance(res, dict) and "queued" in res:
                was_owner = not h.waiting
                h.waiting = True
                if was_owner:
                    out.append(Lost(name, "disconnected"))
            else:
                h.waiting = False
                out.append(Acquired(name, Entry.from_wire(res)))
        for group in list(self.groups):
            h = self.groups[group]
            params = [group, h.value] if h.has_value else [group]
            exc, res = yield ("join", params, None)
            if exc is not None and not isinstance(exc, errors.Taken):
                lost_groups.append(group)
                self.groups.pop(group, None)
        self.mons_srv.clear()
        for user in list(self.mons):
            m = self.mons.get(user)
            if m is None:
                continue
            m[1] = None
            if not isinstance(m[0], str):
                # A connection of the old daemon: gone with it.
                del self.mons[user]
                out.append(Down(user, m[0], "noproc"))
                continue
            exc, res = yield ("monitor", [m[0]], self._reindex(user))
            if exc is not None and user in self.mons:
                del self.mons[user]
                out.append(Down(user, m[0], "noproc"))
        h = self.hello
        out.append(Reconnected(h.conn if h else 0, h.boot if h else "",
                               not same, lost_names, lost_groups))
        return out

    def _reindex(self, user: int) -> Hook:
        def hook(sref: int) -> int:
            m = self.mons.get(user)
            if m is not None:
                m[1] = sref
                self.mons_srv[sref] = user
            return sref
        return hook


# Result converters without bookkeeping.
def conv_entry_or_none(r: Any) -> Optional[Entry]:
    return None if r is None else Entry.from_wire(r)


def conv_entry(r: Any) -> Entry:
    return Entry.from_wire(r)


def conv_entries(r: Any) -> List[Entry]:
    return [Entry.from_wire(d) for d in r]


def conv_members(r: Any) -> List[Member]:
    return [Member.from_wire(d) for d in r]


def conv_keys(r: Any) -> Keys:
    return Keys(list(r["names"]), list(r["groups"]))


def conv_publish(r: Any) -> PublishResult:
    return PublishResult(r["delivered"], list(r.get("busy", [])))


_STATS_FIELDS = frozenset(Stats.__dataclass_fields__) - {"extra"}


def conv_stats(r: Any) -> Stats:
    s = Stats()
    for k, v in r.items():
        if k in _STATS_FIELDS:
            setattr(s, k, v)
        else:
            s.extra[k] = v
    return s


def conv_queue(r: Any) -> List[Any]:
    """Connection ids; a cluster name's line as :class:`Place` objects."""
    return [Place(x.get("node"), x["conn"]) if isinstance(x, dict) else x
            for x in r]


def conv_nodes(r: Any) -> List[Node]:
    return [Node.from_wire(d) for d in r]


def register_params(name: str, value: Any, has_value: bool, queue: bool,
                    allow_replacement: bool, replace: bool,
                    scope: Optional[str] = None
                    ) -> Tuple[List[Any], Optional[Dict[str, Any]]]:
    """register's params and the options map (None: no options).  A scope
    other than None and ``"local"`` (the default) goes to the daemon as
    given (``"cluster"``, protocol 3)."""
    opts: Dict[str, Any] = {}
    if queue:
        opts["queue"] = True
    if allow_replacement:
        opts["allow_replacement"] = True
    if replace:
        opts["replace"] = True
    if scope is not None and scope != "local":
        opts["scope"] = scope
    if opts:
        return [name, value, opts], opts
    if has_value:
        return [name, value], None
    return [name], None


def many_params(items: Any) -> List[List[Any]]:
    """register_many's items: names, (name,) or (name, value)."""
    out: List[List[Any]] = []
    for it in items:
        if isinstance(it, str):
            out.append([it])
        else:
            out.append(list(it))
    return out


def reply_params(call_id: int, result: Any, error: Any) -> List[Any]:
    if error is None:
        return [call_id, result]
    if isinstance(error, errors.ServerError):
        return [call_id, None, [error.code or "error", error.message]]
    code, message = error
    return [call_id, None, [code, message]]


def check_reply_target(core: Core, call: Any) -> int:
    cid = call.call_id if isinstance(call, Call) else call
    s = core.reply_id(cid)
    if s is None:
        raise NotFound("the call is not pending on this connection "
                       "(answered, or received before a reconnect)")
    return s


def whereis_params(core: Core, name: str, scope: Optional[str],
                   consistent: bool) -> List[Any]:
    """whereis's params: ``[name]``, or with options only those that
    differ from the default.  ``"local"`` to a daemon that speaks protocol
    2 is the plain request: all its names are local."""
    opts: Dict[str, Any] = {}
    if scope is not None and not (
            scope == "local" and not consistent and core.hello is not None
            and 0 < core.hello.protocol < 3):
        opts["scope"] = scope
    if consistent:
        opts["consistent"] = True
    return [name, opts] if opts else [name]


def list_params(prefix: str, limit: int, after: Optional[str],
                scope: Optional[str]) -> List[Any]:
    """list's params: ``[prefix, limit(, after)]``, or with a scope other
    than local ``[prefix, limit, after or None, {"scope": scope}]``."""
    if scope is not None and scope != "local":
        return [prefix, limit, after, {"scope": scope}]
    return [prefix, limit] if after is None else [prefix, limit, after]
