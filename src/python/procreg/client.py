"""The synchronous procreg client.

One :class:`Client` is one connection to procregd: the lifeline of the
names it registers and the groups it joins.  Requests wait for their
answer; notifications that arrive meanwhile are queued, never lost, and
handed out by :meth:`Client.next_event` and :meth:`Client.events`.  A
client must be used by one thread at a time.

Every wait is bounded: each request by the client's ``timeout`` (plus,
for ``call`` and ``await_name``, the daemon's own time limit), and input
from the daemon by ``max_message`` bytes per object; garbage, an
oversized declared length or a malformed message closes the connection
with :class:`~procreg.errors.ProtocolError`.
"""
from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections import deque
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Union)

from . import _core as c
from . import _requests as rq
from .errors import (ConnectError, ConnectionClosed, NotFound, NotOwner,
                     ProcregError, ProtocolError, ServerError, Stale,
                     Timeout)
from .types import (Acquired, Call, Entry, Hello, Hold, Keys, Member,
                    Node, Notification, Overflow, PublishResult, Queued,
                    Reconnected, Restarted, Stats, SubEvent, Target)

__all__ = ["Client", "Pipeline", "Subscription", "Hold", "connect"]

_NO_VALUE = c._MISSING
_monotonic = time.monotonic
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class _Sink(deque):
    """A subscription's events, in order."""
    put = deque.append


class Subscription:
    """An active subscription (PROTOCOL.md section 4.22).

    ``sub``: its id; ``seq``: the last event at subscribe time; ``gap``:
    ``since`` was too old (a fresh snapshot came instead); ``entries`` and
    ``members``: the snapshot (empty when the events after ``since`` are
    replayed instead).  Iterate over it for its :class:`SubEvent`\\ s; the
    iteration ends after an :class:`Overflow` or :class:`Restarted`, which
    it yields last.  As a context manager it unsubscribes on exit.
    """

    def __init__(self, client: "Client", sub: int, result: Dict[str, Any],
                 sink: _Sink) -> None:
        self._client = client
        self._sink = sink
        self.sub: int = sub
        self.seq: int = result["seq"]
        self.gap: bool = bool(result.get("gap", False))
        self.has_snapshot: bool = "entries" in result
        self.entries: List[Entry] = []
        self.members: List[Member] = []
        for d in result.get("entries", ()):
            if "group" in d:
                self.members.append(Member.from_wire(d))
            else:
                self.entries.append(Entry.from_wire(d))
        self.ended: Optional[Union[Overflow, Restarted]] = None

    def next(self, timeout: Optional[float] = None) -> Optional[Union[SubEvent, Overflow, Restarted]]:
        """The next event of this subscription, waiting up to ``timeout``
        seconds (None: for ever); None when none came in time or the
        subscription has ended."""
        deadline = None if timeout is None else _monotonic() + timeout
        while not self._sink:
            if self.ended is not None:
                return None
            if not self._client._pump(deadline):
                return None
        ev = self._sink.popleft()
        if isinstance(ev, (Overflow, Restarted)):
            self.ended = ev
        return ev

    def __iter__(self) -> Iterator[Union[SubEvent, Overflow, Restarted]]:
        while True:
            ev = self.next()
            if ev is None:
                return
            yield ev
            if self.ended is not None:
                return

    def close(self) -> bool:
        """Unsubscribe; True if the subscription was still active."""
        return self._client.unsubscribe(self.sub)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(ProcregError):
            self.close()


class Client:
    """A synchronous connection to procregd; see :func:`connect`."""

    def __init__(self, path: Optional[str] = None, *,
                 auto_reconnect: bool = False,
                 timeout: float = c.DEFAULT_TIMEOUT,
                 label: Optional[str] = None,
                 max_message: int = c.DEFAULT_MAX_MESSAGE,
                 reconnect_max: float = c.RECONNECT_MAX,
                 on_reconnect: Optional[Callable[[Reconnected], None]] = None
                 ) -> None:
        self.path: str = path or c.default_socket_path()
        self.timeout: float = timeout
        self.label = label
        self.on_reconnect = on_reconnect
        self._max_message = max_message
        self._reconnect_max = reconnect_max
        self._core = c.Core(auto_reconnect)
        self._sock: Optional[socket.socket] = None
        self._unpacker: Any = None
        self._events: deque = deque()
        self._done: Dict[int, Any] = {}
        self._handlers: Dict[Target, Callable[[Call], Any]] = {}
        self._rcvtimeo: Optional[float] = None
        self._backoff = c.RECONNECT_MIN
        self._next_retry = 0.0
        self._closed = False
        self._restoring = False
        self._open()

    # -- connection -------------------------------------------------------
    @property
    def auto_reconnect(self) -> bool:
        """Whether the client reconnects (and restores) by itself."""
        return self._core.auto

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._sock is not None

    @property
    def conn(self) -> int:
        """This connection's id, as the daemon numbers it."""
        return self._core.hello.conn if self._core.hello else 0

    @property
    def server(self) -> Optional[Hello]:
        """The daemon's last ``hello`` answer."""
        return self._core.hello

    def fileno(self) -> int:
        """The socket, for select/poll (-1 while disconnected).  After a
        request, notifications may already wait in the client: call
        :meth:`next_event` with ``timeout=0`` until it returns None."""
        return self._sock.fileno() if self._sock is not None else -1

    def _open(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise ConnectError("cannot reach the daemon at %s: %s"
                               % (self.path, e.strerror or e)) from None
        s.settimeout(None)
        # Kernel time limits: one recv per read, no poll before it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                     _timeval(self.timeout))
        self._rcvtimeo = None
        self._sock = s
        self._unpacker = c.make_unpacker(self._max_message)
        self._done.clear()
        self._core.forget_pending()
        try:
            self._do(*rq.hello(self._core, self.label))
        except BaseException:
            self._drop()
            raise

    def close(self) -> None:
        """Close the connection: its names and memberships vanish.  Later
        requests raise :class:`ConnectionClosed`."""
        self._closed = True
        self._drop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            self._core.lost_connection()

    def _fatal(self, why: str) -> None:
        self._drop()
        raise ProtocolError(why)

    def _ensure(self, deadline: Optional[float]) -> None:
        if self._closed:
            raise ConnectionClosed("the client is closed")
        if not self._core.auto or self._restoring:
            raise ConnectionClosed("not connected")
        self._reconnect(deadline)

    def _reconnect(self, deadline: Optional[float]) -> None:
        while True:
            now = _monotonic()
            if now >= self._next_retry:
                try:
                    self._open_and_restore()
                    self._backoff = c.RECONNECT_MIN
                    return
                except (ConnectError, ConnectionClosed, Timeout,
                        ProtocolError):
                    self._drop()
                    self._next_retry = _monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2,
                                        self._reconnect_max)
                now = _monotonic()
            if deadline is not None and now >= deadline:
                raise ConnectError("cannot reach the daemon at %s; "
                                   "retrying" % self.path)
            until = self._next_retry if deadline is None else min(
                self._next_retry, deadline)
            time.sleep(max(0.0, until - now))

    def _open_and_restore(self) -> None:
        old = self._core.hello.boot if self._core.hello else None
        self._restoring = True
        try:
            out = self._restore_steps(old)
        finally:
            self._restoring = False
        for ev in out:
            self._events.append(ev)
            if isinstance(ev, Reconnected) and self.on_reconnect:
                self.on_reconnect(ev)

    def _restore_steps(self, old: Optional[str]) -> List[Notification]:
        self._open()
        steps = self._core.restore(old)
        try:
            step = next(steps)
            while True:
                method, params, hook = step
                try:
                    res = (None, self._do(method, params, hook, 0.0))
                except ServerError as e:
                    res = (e, None)
                step = steps.send(res)
        except StopIteration as stop:
            return stop.value

    # -- I/O ----------------------------------------------------------------
    def _arm(self, remaining: Optional[float]) -> None:
        cur = self._rcvtimeo
        if remaining is None:
            if cur != 0.0:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                      _timeval(0.0))
                self._rcvtimeo = 0.0
            return
        if (cur is None or cur == 0.0 or cur > remaining * 1.1 + 0.002
                or cur < min(remaining, 1.0) * 0.5):
            want = max(remaining, 0.001)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                  _timeval(want))
            self._rcvtimeo = want

    def _read(self, deadline: Optional[float], nowait: bool = False) -> None:
        """Read once (up to the deadline) and parse what came."""
        sock = self._sock
        if sock is None:
            self._ensure(deadline)
            return
        if not nowait:
            if deadline is None:
                self._arm(None)
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise Timeout("no answer from the daemon in time")
                self._arm(remaining)
        try:
            data = sock.recv(262144, _DONTWAIT) if nowait else \
                sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            if nowait:
                raise Timeout("nothing to read") from None
            return
        except OSError as e:
            self._drop()
            raise ConnectionClosed("connection lost: %s" % e) from None
        if not data:
            self._drop()
            raise ConnectionClosed("the daemon closed the connection")
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        up = self._unpacker
        try:
            up.feed(data)
        except Exception:   # BufferFull: one object larger than allowed
            self._fatal("the daemon sent an object larger than %d bytes"
                        % self._max_message)
        core = self._core
        done = self._done
        try:
            for obj in up:
                if type(obj) is list and len(obj) == 4 and obj[0] == 1:
                    msgid, val, err = core.on_response(obj[1], obj[2], obj[3])
                    if msgid is not None:
                        done[msgid] = (val, err)
                        if err and type(val) is ProtocolError:
                            self._drop()     # a malformed result
                            return
                elif (type(obj) is list and len(obj) == 3 and obj[0] == 2
                      and type(obj[1]) is str):
                    ev = core.on_push(obj[1], obj[2])
                    if ev is not None:
                        self._events.append(ev)
                else:
                    raise ValueError("not a response or notification")
        except Exception as e:   # garbage, too deep, bad UTF-8, bad shape
            self._fatal("the daemon sent something that is not the "
                        "protocol: %s" % (e,))

    def _pump(self, deadline: Optional[float]) -> bool:
        """Read once for notifications; False when the deadline passed.
        With auto_reconnect a lost connection is reconnected meanwhile."""
        try:
            self._read(deadline, nowait=deadline is not None
                       and deadline <= _monotonic())
            return True
        except Timeout:
            return False
        except ConnectError:
            if deadline is not None and _monotonic() >= deadline:
                return False
            raise
        except (ConnectionClosed, ProtocolError):
            if self._core.auto and not self._closed:
                return True
            raise

    def _send(self, data: bytes) -> bool:
        """Send; False when the connection was found closed (nothing of it
        reached the daemon)."""
        try:
            self._sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self._drop()
            return False
        except BlockingIOError:
            self._drop()
            raise Timeout("the daemon does not read its socket") from None
        except OSError as e:
            self._drop()
            raise ConnectionClosed("connection lost: %s" % e) from None

    def _do(self, method: str, params: list, hook: Any,
            extra: float = 0.0) -> Any:
        deadline = _monotonic() + self.timeout + extra
        for attempt in (0, 1):
            if self._sock is None:
                self._ensure(deadline)
            msgid, data = self._core.pack(method, params, hook)
            if self._send(data):
                break
            if not self._core.auto or attempt:
                raise ConnectionClosed("the daemon closed the connection")
        done = self._done
        while msgid not in done:
            self._read(deadline)
        val, err = done.pop(msgid)
        if err:
            raise val
        return val

    # -- protocol methods ---------------------------------------------------
    def hello(self, label: Optional[str] = None) -> Hello:
        """Name the connection in the daemon's logs; the daemon's version,
        protocol, our connection id and its ``boot`` id."""
        return self._do(*rq.hello(self._core, label))

    def register(self, name: str, value: Any = _NO_VALUE, *,
                 queue: bool = False, allow_replacement: bool = False,
                 replace: bool = False,
                 scope: Optional[str] = None) -> Union[Entry, Queued]:
        """Register ``name`` (with an optional value) to this connection.

        ``queue``: when taken, wait in the name's queue (returns
        :class:`Queued`; an :class:`Acquired` notification follows when it
        passes to us).  ``allow_replacement``: a later ``replace`` may take
        it (we get :class:`Lost`).  ``replace``: take it from an owner that
        allows it.  ``scope="cluster"`` (protocol 3): a cluster name,
        unique across every node of the cluster (with ``queue``, a place
        in its line across the nodes, :class:`Acquired` coming about one
        etcd round trip after its owner let it go; with replace or
        allow_replacement the daemon raises BadRequest in this protocol
        version); Unavailable when the daemon runs without ``--etcd`` or
        cannot reach etcd; :class:`Lost` ``"nodedown"`` when our daemon's
        node loses its lease; auto-reconnect registers it again as a
        cluster name.  Raises Taken, Forbidden, Limit, BadRequest."""
        return self._do(*rq.register(self._core, name, value, queue,
                                     allow_replacement, replace, scope))

    def unregister(self, name: str, gen: Optional[int] = None) -> bool:
        """Unregister a name we own (or give up our place in its queue);
        with ``gen``, only while its entry has that generation (else
        Stale).  Raises NotFound, NotOwner."""
        return self._do(*rq.unregister(self._core, name, gen))

    def whereis(self, name: str, scope: Optional[str] = None,
                consistent: bool = False) -> Optional[Entry]:
        """The name's entry, or None when it is not registered.

        Protocol 3: ``scope`` ``None`` or ``"any"`` finds this daemon's
        local name first, else the cluster's; ``"local"`` or
        ``"cluster"`` only that one.  ``consistent``: read a cluster name
        from etcd rather than the daemon's cache (never ``stale``).
        Raises Unavailable when the cluster cannot be asked."""
        return self._do(*rq.whereis(self._core, name, scope, consistent))

    def send(self, target: Target, payload: Any,
             gen: Optional[int] = None) -> bool:
        """Queue a message to the owner of a name (or to a connection id);
        with ``gen``, only to that registration.  Raises NotFound, Stale,
        Busy."""
        return self._do(*rq.send(self._core, target, payload, gen))

    def call(self, target: Target, payload: Any,
             timeout: Optional[float] = None) -> Any:
        """Call the owner of a name (or a connection) and return its
        reply's result.  ``timeout``: the daemon's limit in seconds
        (default 5).  Raises CallTimeout, DownError, NotFound, Busy, Limit, or
        the callee's error (RemoteError for a code of its own)."""
        return self._do(*rq.call(self._core, target, payload, timeout))

    def reply(self, call: Union[Call, int], result: Any = None, *,
              error: Union[None, ServerError, tuple] = None) -> bool:
        """Answer a :class:`Call` (or its id) with ``result``, or with
        ``error``: a (code, message) pair or a ServerError.  NotFound when
        the call is no longer pending."""
        return self._do(*rq.reply(self._core, call, result, error))

    def monitor(self, target: Target) -> int:
        """Watch a name's current registration (or a connection); a
        :class:`Down` with the returned ref comes when it ends (``noproc``
        at once when it does not exist)."""
        return self._do(*rq.monitor(self._core, target))

    def demonitor(self, ref: int) -> bool:
        """Cancel a monitor; True if it had not fired yet."""
        sref = self._core.demonitor_ref(ref)
        if sref is None:
            return False
        return self._do("demonitor", [sref], self._core.hook_demonitor(ref))

    def await_name(self, name: str, timeout: Optional[float] = None) -> Entry:
        """Wait until ``name`` is registered (``await``): its entry.
        ``timeout`` in seconds (default 5; 0 only checks).  Raises
        CallTimeout when it did not come."""
        return self._do(*rq.await_name(self._core, name, timeout))

    def queue(self, name: str) -> List[Any]:
        """The connection ids waiting for ``name``, first in line first;
        for a cluster name's line (protocol 3) :class:`Place` objects, the
        node and the connection id of each."""
        return self._do(*rq.queue(self._core, name))

    def join(self, group: str, value: Any = _NO_VALUE) -> Member:
        """Join a group (with an optional value).  Raises Taken when a
        member already."""
        return self._do(*rq.join(self._core, group, value))

    def leave(self, group: str) -> bool:
        """Leave a group.  Raises NotFound when not a member."""
        return self._do(*rq.leave(self._core, group))

    def members(self, group: str) -> List[Member]:
        """The group's members, in join order."""
        return self._do(*rq.members(self._core, group))

    def publish(self, group: str, payload: Any,
                echo: bool = True) -> PublishResult:
        """Push ``payload`` to every member of ``group`` (not to ourselves
        when ``echo`` is false)."""
        return self._do(*rq.publish(self._core, group, payload, echo))

    def update(self, name: str, value: Any,
               gen: Optional[int] = None) -> Entry:
        """Change the value of a name we own; the entry (since and gen
        kept).  Raises NotFound, NotOwner, Stale."""
        return self._do(*rq.update(self._core, name, value, gen))

    def keys(self, conn: int) -> Keys:
        """The names and groups of a connection.  NotFound when closed."""
        return self._do(*rq.keys(self._core, conn))

    def register_many(self, items: Iterable[Union[str, tuple, list]]
                      ) -> List[Entry]:
        """Register several names at once, all or none: each item a name
        or a (name, value) pair."""
        return self._do(*rq.register_many(self._core, items))

    def list_page(self, prefix: str = "", limit: int = 1000,
                  after: Optional[str] = None,
                  scope: Optional[str] = None) -> List[Entry]:
        """One page of ``list``: up to ``limit`` entries under ``prefix``
        with names after ``after`` (``scope`` as for :meth:`list`)."""
        return self._do(*rq.list_page(self._core, prefix, limit, after,
                                      scope))

    def list(self, prefix: str = "", page_size: int = 1000, *,
             scope: Optional[str] = None) -> Iterator[Entry]:
        """Every entry whose name starts with ``prefix``, in name order,
        fetched page by page as the iterator advances.  Protocol 3:
        ``scope`` ``None`` or ``"local"`` lists this daemon's local names,
        ``"cluster"`` the cluster's, ``"all"`` both (Unavailable without
        ``--etcd``)."""
        after = None
        while True:
            page = self.list_page(prefix, page_size, after, scope)
            if not page:
                return
            yield from page
            after = page[-1].name

    def nodes(self) -> List[Node]:
        """The nodes of the cluster, in name order (protocol 3).  Raises
        Unavailable when the daemon runs without ``--etcd`` or cannot
        reach etcd."""
        return self._do(*rq.nodes(self._core))

    def stats(self) -> Stats:
        """The daemon's counters and gauges."""
        return self._do(*rq.stats(self._core))

    def evict(self, name: str) -> bool:
        """Administrators: remove a name whoever holds it.  Raises
        Forbidden, NotFound."""
        return self._do(*rq.evict(self._core, name))

    def subscribe(self, prefix: str = "", *, groups: bool = False,
                  since: Optional[int] = None,
                  scope: Optional[str] = None) -> Subscription:
        """Subscribe to changes of the names under ``prefix`` (and with
        ``groups`` of the groups).  With ``since``, the events after it are
        replayed (or, when too old, ``gap`` is set and a fresh snapshot
        comes).  Iterate over the result for its events.

        ``scope="cluster"`` (protocol 3): the cluster's names as the
        node's watch on etcd reports them (registered, updated,
        unregistered; ``seq`` is the etcd revision, and a reconnect ends
        it with :class:`Overflow` even after a restart, resumable with
        ``since``); not with ``groups`` (BadRequest); Unavailable without
        ``--etcd``."""
        sink = _Sink()
        sub, res = self._do(*rq.subscribe(self._core, prefix, groups, since,
                                          sink, scope))
        return Subscription(self, sub, res, sink)

    def unsubscribe(self, sub: Union[int, Subscription]) -> bool:
        """End a subscription; True if it was active.  Its queued events
        are dropped."""
        if isinstance(sub, Subscription):
            sub = sub.sub
        s = self._core.subs.get(sub)
        if s is None:
            return False
        s.sink.clear()
        try:
            return self._do("unsubscribe", [s.server], None)
        finally:
            self._core.end_sub(sub)
            s.sink.clear()

    # -- notifications -------------------------------------------------------
    def next_event(self, timeout: Optional[float] = None
                   ) -> Optional[Notification]:
        """The next notification: a queued one at once, else wait up to
        ``timeout`` seconds (None: for ever, 0: do not wait); None when
        none came.  Calls to names served with :meth:`serve` are answered
        here by their handler and not returned.  With auto_reconnect a
        lost connection is restored meanwhile (a :class:`Reconnected`
        follows); without, ConnectionClosed is raised."""
        deadline = None if timeout is None else _monotonic() + timeout
        events = self._events
        while True:
            while events:
                ev = events.popleft()
                if (self._handlers and type(ev) is Call
                        and self._serve_one(ev)):
                    continue
                return ev
            if not self._pump(deadline):
                return None

    def events(self, timeout: Optional[float] = None
               ) -> Iterator[Notification]:
        """Iterate over notifications; stops when none came for
        ``timeout`` seconds (None: never)."""
        while True:
            ev = self.next_event(timeout)
            if ev is None:
                return
            yield ev

    __iter__ = events

    def pending(self) -> int:
        """Notifications received and not handed out yet."""
        return len(self._events)

    def _take(self, pred: Callable[[Any], bool],
              deadline: Optional[float]) -> Any:
        """Remove and return the first queued notification matching
        ``pred``, reading until the deadline; the others keep their
        order."""
        checked = 0
        events = self._events
        while True:
            for i in range(checked, len(events)):
                if pred(events[i]):
                    ev = events[i]
                    del events[i]
                    return ev
            checked = len(events)
            if not self._pump(deadline):
                return None

    # -- serving and holding --------------------------------------------------
    def serve(self, name: str, *, register: bool = True, value: Any = _NO_VALUE,
              pass_call: bool = False, **register_opts: bool
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: answer calls to ``name`` with the function.

        The name is registered now (unless ``register`` is false; options
        as :meth:`register`).  The function gets the call's payload (or,
        with ``pass_call``, the :class:`Call`) and returns the result; a
        ServerError it raises is replied as that error, any other
        exception as code ``"error"``.  Calls are answered while the client
        waits for notifications (:meth:`next_event`,
        :meth:`serve_forever`)."""
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            if register:
                self.register(name, value, **register_opts)
            self._handlers[name] = (lambda call: fn(call)) if pass_call \
                else (lambda call: fn(call.payload))
            return fn
        return deco

    def _serve_one(self, call: Call) -> bool:
        handler = self._handlers.get(call.target)
        if handler is None:
            return False
        try:
            result, error = handler(call), None
        except ServerError as e:
            result, error = None, e
        except Exception as e:   # the handler's failure goes to the caller
            result, error = None, ("error", "%s: %s" % (type(e).__name__, e))
        with contextlib.suppress(NotFound, ConnectionClosed):
            self.reply(call, result, error=error)
        return True

    def serve_forever(self, timeout: Optional[float] = None) -> None:
        """Answer calls to served names until no notification came for
        ``timeout`` seconds (None: for ever); other notifications are
        dropped."""
        for _ in self.events(timeout):
            pass

    @contextlib.contextmanager
    def hold(self, name: str, value: Any = _NO_VALUE, *, wait: bool = True,
             timeout: Optional[float] = None,
             allow_replacement: bool = False,
             scope: Optional[str] = None) -> Iterator[Hold]:
        """Hold ``name`` for the duration of a ``with`` block.

        With ``wait`` we queue for it when taken and wait up to
        ``timeout`` seconds (default: the client's timeout) for it to pass
        to us (Timeout then, our place given up); without, Taken is
        raised.  ``scope="cluster"``: a cluster name, as :meth:`register`
        (with ``wait``, a place in its line across the nodes).  On exit
        the name is unregistered, fenced by its gen."""
        deadline = _monotonic() + (self.timeout if timeout is None
                                   else timeout)
        res = self.register(name, value, queue=wait,
                            allow_replacement=allow_replacement,
                            scope=scope)
        if isinstance(res, Queued):
            ev = self._take(lambda e: type(e) is Acquired and e.name == name,
                            deadline)
            if ev is None:
                with contextlib.suppress(ProcregError):
                    self.unregister(name)
                raise Timeout("%s did not pass to us in time" % name)
            res = ev.entry
        h = Hold(name, res)
        try:
            yield h
        finally:
            with contextlib.suppress(NotFound, NotOwner, Stale,
                                     ConnectionClosed):
                self.unregister(name, h.entry.gen)

    def pipeline(self) -> "Pipeline":
        """A batch of requests sent in one write and answered together."""
        return Pipeline(self)


class Pipeline:
    """Requests queued with the client's method names (``p.whereis(n)``,
    ``p.send(...)``, ...) and sent in one write by :meth:`execute`, which
    returns their results in order."""

    _METHODS = ("hello", "register", "unregister", "whereis", "send",
                "call", "monitor", "await_name", "queue", "join", "leave",
                "members", "publish", "update", "keys", "register_many",
                "list_page", "stats", "evict", "nodes")
    # Positional, in the request builders' order (register: value, queue,
    # allow_replacement, replace, scope; whereis: scope, consistent).
    _DEFAULTS: Dict[str, tuple] = {
        "hello": (None,),
        "register": (_NO_VALUE, False, False, False, None),
        "unregister": (None,), "whereis": (None, False), "send": (None,),
        "call": (None,), "await_name": (None,), "join": (_NO_VALUE,),
        "publish": (True,), "update": (None,),
        "list_page": ("", 1000, None, None),
    }

    def __init__(self, client: Client) -> None:
        self._client = client
        self._reqs: List[tuple] = []

    def __getattr__(self, method: str) -> Callable[..., "Pipeline"]:
        if method not in self._METHODS:
            raise AttributeError(method)
        build = getattr(rq, method)
        defaults = self._DEFAULTS.get(method, ())

        def add(*args: Any) -> "Pipeline":
            need = build.__code__.co_argcount - 1
            missing = need - len(args)
            full = args + defaults[len(defaults) - missing:] if missing \
                else args
            self._reqs.append((build, full))
            return self
        return add

    def __len__(self) -> int:
        return len(self._reqs)

    def execute(self, raise_on_error: bool = True) -> List[Any]:
        """Send every queued request in one write and return the results
        in order; with ``raise_on_error`` false, errors are returned in
        place of results (else the first is raised, after all answers
        were read)."""
        cl = self._client
        reqs, self._reqs = self._reqs, []
        if not reqs:
            return []
        if cl._sock is None:
            cl._ensure(_monotonic() + cl.timeout)
        core = cl._core
        ids = []
        parts = []
        extra = 0.0
        for build, args in reqs:
            method, params, hook, ex = build(core, *args)
            extra = max(extra, ex)
            msgid, data = core.pack(method, params, hook)
            ids.append(msgid)
            parts.append(data)
        if not cl._send(b"".join(parts)):
            raise ConnectionClosed("the daemon closed the connection")
        deadline = _monotonic() + cl.timeout + extra
        done = cl._done
        out: List[Any] = []
        first: Optional[BaseException] = None
        for msgid in ids:
            while msgid not in done:
                cl._read(deadline)
            val, err = done.pop(msgid)
            if err and first is None:
                first = val
            out.append(val)
        if first is not None and raise_on_error:
            raise first
        return out


def _timeval(seconds: float) -> bytes:
    sec = int(seconds)
    return struct.pack("ll", sec, int((seconds - sec) * 1e6))


def connect(path: Optional[str] = None, auto_reconnect: bool = False,
            timeout: float = c.DEFAULT_TIMEOUT, *, label: Optional[str] = None,
            max_message: int = c.DEFAULT_MAX_MESSAGE,
            reconnect_max: float = c.RECONNECT_MAX,
            on_reconnect: Optional[Callable[[Reconnected], None]] = None
            ) -> Client:
    """Connect to procregd and return a :class:`Client`.

    ``path``: the socket (None: resolved as libprocreg does, see
    :func:`procreg.default_socket_path`).  ``auto_reconnect``: when the
    daemon goes away, reconnect with backoff from 50 ms to
    ``reconnect_max`` seconds and register the names (with their options
    and last value), join the groups and set the monitors again; a monitor
    whose name did not come back fires ``noproc`` (and every monitor of a
    connection id), subscriptions end with :class:`Restarted` (or
    :class:`Overflow` when the daemon is the same one), and a
    :class:`Reconnected` notification (and ``on_reconnect``) tells what
    could not be restored.  A request that may have reached the old daemon
    raises ConnectionClosed; the next one reconnects.  ``timeout``: seconds
    a request waits for its answer.  ``label``: names the connection in
    the daemon's logs.  ``max_message``: the largest object accepted from
    the daemon, in bytes."""
    return Client(path, auto_reconnect=auto_reconnect, timeout=timeout,
                  label=label, max_message=max_message,
                  reconnect_max=reconnect_max, on_reconnect=on_reconnect)
