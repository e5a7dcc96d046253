"""The asyncio procreg client.

``client = await procreg.aio.connect()``; every protocol method is a
coroutine, many may be pending at once on one connection (responses are
matched by msgid), and a reader on the event loop parses everything the
daemon sends as it comes: notifications are queued (never lost) for
:meth:`Client.next_event` and ``async for ev in client.events()``, and
calls to names served with :meth:`Client.serve` are answered by their
handler in a task of their own.  Every request is bounded by the
client's ``timeout`` (plus the daemon's own limit for ``call`` and
``await_name``), and input by ``max_message`` bytes per object.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from typing import (Any, AsyncIterator, Awaitable, Callable, Dict, Iterable,
                    List, Optional, Set, Union)

from . import _core as c
from . import _requests as rq
from .errors import (ConnectError, ConnectionClosed, NotFound, NotOwner,
                     ProcregError, ProtocolError, ServerError, Stale,
                     Timeout)
from .types import (Acquired, Call, Entry, Hello, Hold, Keys, Member,
                    Node, Notification, Overflow, PublishResult, Queued,
                    Reconnected, Restarted, Stats, SubEvent, Target)

__all__ = ["Client", "Subscription", "Pipeline", "connect"]

_NO_VALUE = c._MISSING
_CLOSED = object()


class _Buffer:
    """A deque that coroutines can wait on (put wakes every waiter)."""

    def __init__(self) -> None:
        self.d: deque = deque()
        self.waiters: List[asyncio.Future] = []

    def put(self, item: Any) -> None:
        self.d.append(item)
        if self.waiters:
            for w in self.waiters:
                if not w.done():
                    w.set_result(None)
            self.waiters.clear()

    def clear(self) -> None:
        self.d.clear()

    async def wait(self, timeout: Optional[float]) -> bool:
        """Wait for a put; False when the timeout passed."""
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self.waiters.remove(fut)

    async def take(self, pred: Optional[Callable[[Any], bool]],
                   timeout: Optional[float]) -> Any:
        """Remove and return the first item (matching pred), waiting up
        to timeout; None when none came."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        checked = 0
        while True:
            d = self.d
            if pred is None:
                if d:
                    if d[0] is _CLOSED:
                        raise ConnectionClosed("the connection was lost")
                    return d.popleft()
            else:
                for i in range(checked, len(d)):
                    if d[i] is _CLOSED:
                        raise ConnectionClosed("the connection was lost")
                    if pred(d[i]):
                        item = d[i]
                        del d[i]
                        return item
                checked = len(d)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return None
            if not await self.wait(left):
                return None


class _Proto(asyncio.Protocol):
    def __init__(self, client: "Client") -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client._feed(self, data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.client._on_lost(self)


class Subscription:
    """An active subscription; ``async for ev in sub`` yields its
    :class:`SubEvent`\\ s and ends after the :class:`Overflow` or
    :class:`Restarted` that ends it.  ``async with`` unsubscribes on exit.
    Attributes as :class:`procreg.client.Subscription`."""

    def __init__(self, client: "Client", sub: int, result: Dict[str, Any],
                 sink: _Buffer) -> None:
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

    async def next(self, timeout: Optional[float] = None
                   ) -> Optional[Union[SubEvent, Overflow, Restarted]]:
        """The next event, waiting up to ``timeout`` seconds (None: for
        ever); None when none came or the subscription ended."""
        if self.ended is not None and not self._sink.d:
            return None
        ev = await self._sink.take(None, timeout)
        if isinstance(ev, (Overflow, Restarted)):
            self.ended = ev
        return ev

    async def __aiter__(self) -> AsyncIterator[Union[SubEvent, Overflow, Restarted]]:
        while True:
            ev = await self.next()
            if ev is None:
                return
            yield ev
            if self.ended is not None:
                return

    async def close(self) -> bool:
        """Unsubscribe; True if it was still active."""
        return await self._client.unsubscribe(self.sub)

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        with contextlib.suppress(ProcregError):
            await self.close()


class Client:
    """An asyncio connection to procregd; see :func:`connect`."""

    def __init__(self, path: Optional[str] = None, *,
                 auto_reconnect: bool = False,
                 timeout: float = c.DEFAULT_TIMEOUT,
                 label: Optional[str] = None,
                 max_message: int = c.DEFAULT_MAX_MESSAGE,
                 reconnect_max: float = c.RECONNECT_MAX,
                 on_reconnect: Optional[Callable[[Reconnected], Any]] = None
                 ) -> None:
        """Prefer :func:`connect`, which also opens the connection."""
        self.path: str = path or c.default_socket_path()
        self.timeout: float = timeout
        self.label = label
        self.on_reconnect = on_reconnect
        self._max_message = max_message
        self._reconnect_max = reconnect_max
        self._core = c.Core(auto_reconnect)
        self._transport: Optional[asyncio.Transport] = None
        self._proto: Optional[_Proto] = None
        self._unpacker: Any = None
        self._futs: Dict[int, asyncio.Future] = {}
        self._events = _Buffer()
        self._handlers: Dict[Target, Callable[[Call], Any]] = {}
        self._tasks: Set[asyncio.Task] = set()
        self._ready = asyncio.Event()
        self._closed = False
        self._reconnector: Optional[asyncio.Task] = None

    # -- connection -------------------------------------------------------
    @property
    def conn(self) -> int:
        """This connection's id, as the daemon numbers it."""
        return self._core.hello.conn if self._core.hello else 0

    @property
    def server(self) -> Optional[Hello]:
        """The daemon's last ``hello`` answer."""
        return self._core.hello

    @property
    def connected(self) -> bool:
        """Whether a connection is open and restored now."""
        return self._ready.is_set()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await asyncio.wait_for(
                loop.create_unix_connection(lambda: _Proto(self), self.path),
                self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise ConnectError("cannot reach the daemon at %s: %s"
                               % (self.path, getattr(e, "strerror", None)
                                  or e or "timeout")) from None
        self._unpacker = c.make_unpacker(self._max_message)
        self._core.forget_pending()
        self._transport, self._proto = transport, proto
        try:
            await self._do(*rq.hello(self._core, self.label), raw=True)
        except BaseException:
            # A daemon that never says hello must not keep our socket.
            self._abort()
            raise

    async def _open_and_restore(self) -> None:
        if self._core.hello is None:      # the first connection
            await self._open()
            self._ready.set()
            return
        old = self._core.hello.boot
        await self._open()
        steps = self._core.restore(old)
        try:
            step = next(steps)
            while True:
                method, params, hook = step
                try:
                    res = (None, await self._do(method, params, hook, 0.0,
                                                raw=True))
                except ServerError as e:
                    res = (e, None)
                step = steps.send(res)
        except StopIteration as stop:
            out = stop.value
        self._ready.set()
        for ev in out:
            self._events.put(ev)
            if isinstance(ev, Reconnected) and self.on_reconnect:
                r = self.on_reconnect(ev)
                if inspect.isawaitable(r):
                    await r

    async def _reconnect_loop(self) -> None:
        backoff = c.RECONNECT_MIN
        while not self._closed:
            try:
                await self._open_and_restore()
                return
            except (ConnectError, ConnectionClosed, Timeout, ProtocolError):
                self._abort()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._reconnect_max)

    def _abort(self) -> None:
        t = self._transport
        if t is not None:
            t.abort()
            self._on_lost(self._proto)

    async def close(self) -> None:
        """Close the connection: its names and memberships vanish."""
        self._closed = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        if self._transport is not None:
            self._transport.close()
            self._on_lost(self._proto)
        for t in list(self._tasks):
            t.cancel()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _on_lost(self, proto: Optional[_Proto]) -> None:
        if proto is not self._proto or self._transport is None:
            return
        self._transport = None
        self._proto = None
        self._ready.clear()
        self._core.lost_connection()
        futs, self._futs = self._futs, {}
        for f in futs.values():
            if not f.done():
                f.set_exception(ConnectionClosed("the connection was lost"))
        if self._core.auto and not self._closed:
            if self._reconnector is None or self._reconnector.done():
                self._reconnector = asyncio.get_running_loop().create_task(
                    self._reconnect_loop())
        else:
            self._events.put(_CLOSED)
            for s in self._core.subs.values():
                s.sink.put(_CLOSED)

    def _fatal(self, why: str) -> None:
        for f in self._futs.values():
            if not f.done():
                f.set_exception(ProtocolError(why))
        self._abort()

    def _feed(self, proto: _Proto, data: bytes) -> None:
        if proto is not self._proto:
            return
        up = self._unpacker
        try:
            up.feed(data)
        except Exception:
            self._fatal("the daemon sent an object larger than %d bytes"
                        % self._max_message)
            return
        core = self._core
        futs = self._futs
        try:
            for obj in up:
                if type(obj) is list and len(obj) == 4 and obj[0] == 1:
                    msgid, val, err = core.on_response(obj[1], obj[2], obj[3])
                    f = futs.pop(msgid, None) if msgid is not None else None
                    if f is not None and not f.done():
                        if err:
                            f.set_exception(val)
                        else:
                            f.set_result(val)
                    if err and type(val) is ProtocolError:
                        self._fatal(str(val))    # a malformed result
                        return
                elif (type(obj) is list and len(obj) == 3 and obj[0] == 2
                      and type(obj[1]) is str):
                    ev = core.on_push(obj[1], obj[2])
                    if ev is None:
                        continue
                    if type(ev) is Call and self._handlers:
                        h = self._handlers.get(ev.target)
                        if h is not None:
                            self._spawn(self._serve_one(h, ev))
                            continue
                    self._events.put(ev)
                else:
                    raise ValueError("not a response or notification")
        except Exception as e:
            self._fatal("the daemon sent something that is not the "
                        "protocol: %s" % (e,))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _do(self, method: str, params: list, hook: Any,
                  extra: float = 0.0, raw: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout + extra
        if not raw and not self._ready.is_set():
            if self._closed:
                raise ConnectionClosed("the client is closed")
            if not self._core.auto:
                raise ConnectionClosed("not connected")
            try:
                await asyncio.wait_for(self._ready.wait(),
                                       deadline - loop.time())
            except asyncio.TimeoutError:
                raise ConnectError("cannot reach the daemon at %s; "
                                   "retrying" % self.path) from None
        t = self._transport
        if t is None or t.is_closing():
            raise ConnectionClosed("not connected")
        msgid, data = self._core.pack(method, params, hook)
        fut = loop.create_future()
        self._futs[msgid] = fut
        t.write(data)
        timer = loop.call_at(deadline, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            if self._futs.pop(msgid, None) is not None:
                self._core.pending.pop(msgid, None)

    # -- protocol methods ---------------------------------------------------
    async def hello(self, label: Optional[str] = None) -> Hello:
        """As :meth:`procreg.client.Client.hello`."""
        return await self._do(*rq.hello(self._core, label))

    async def register(self, name: str, value: Any = _NO_VALUE, *,
                       queue: bool = False, allow_replacement: bool = False,
                       replace: bool = False,
                       scope: Optional[str] = None) -> Union[Entry, Queued]:
        """As :meth:`procreg.client.Client.register`."""
        return await self._do(*rq.register(self._core, name, value, queue,
                                           allow_replacement, replace,
                                           scope))

    async def unregister(self, name: str, gen: Optional[int] = None) -> bool:
        """As :meth:`procreg.client.Client.unregister`."""
        return await self._do(*rq.unregister(self._core, name, gen))

    async def whereis(self, name: str, scope: Optional[str] = None,
                      consistent: bool = False) -> Optional[Entry]:
        """The name's entry, or None when it is not registered; ``scope``
        and ``consistent`` as :meth:`procreg.client.Client.whereis`."""
        return await self._do(*rq.whereis(self._core, name, scope,
                                          consistent))

    async def send(self, target: Target, payload: Any,
                   gen: Optional[int] = None) -> bool:
        """As :meth:`procreg.client.Client.send`."""
        return await self._do(*rq.send(self._core, target, payload, gen))

    async def call(self, target: Target, payload: Any,
                   timeout: Optional[float] = None) -> Any:
        """As :meth:`procreg.client.Client.call`; many may be pending."""
        return await self._do(*rq.call(self._core, target, payload, timeout))

    async def reply(self, call: Union[Call, int], result: Any = None, *,
                    error: Union[None, ServerError, tuple] = None) -> bool:
        """As :meth:`procreg.client.Client.reply`."""
        return await self._do(*rq.reply(self._core, call, result, error))

    async def monitor(self, target: Target) -> int:
        """As :meth:`procreg.client.Client.monitor`."""
        return await self._do(*rq.monitor(self._core, target))

    async def demonitor(self, ref: int) -> bool:
        """Cancel a monitor; True if it had not fired yet."""
        sref = self._core.demonitor_ref(ref)
        if sref is None:
            return False
        return await self._do("demonitor", [sref],
                              self._core.hook_demonitor(ref))

    async def await_name(self, name: str,
                         timeout: Optional[float] = None) -> Entry:
        """As :meth:`procreg.client.Client.await_name`."""
        return await self._do(*rq.await_name(self._core, name, timeout))

    async def queue(self, name: str) -> List[Any]:
        """The connection ids waiting for ``name``."""
        return await self._do(*rq.queue(self._core, name))

    async def join(self, group: str, value: Any = _NO_VALUE) -> Member:
        """As :meth:`procreg.client.Client.join`."""
        return await self._do(*rq.join(self._core, group, value))

    async def leave(self, group: str) -> bool:
        """As :meth:`procreg.client.Client.leave`."""
        return await self._do(*rq.leave(self._core, group))

    async def members(self, group: str) -> List[Member]:
        """The group's members, in join order."""
        return await self._do(*rq.members(self._core, group))

    async def publish(self, group: str, payload: Any,
                      echo: bool = True) -> PublishResult:
        """As :meth:`procreg.client.Client.publish`."""
        return await self._do(*rq.publish(self._core, group, payload, echo))

    async def update(self, name: str, value: Any,
                     gen: Optional[int] = None) -> Entry:
        """As :meth:`procreg.client.Client.update`."""
        return await self._do(*rq.update(self._core, name, value, gen))

    async def keys(self, conn: int) -> Keys:
        """The names and groups of a connection."""
        return await self._do(*rq.keys(self._core, conn))

    async def register_many(self, items: Iterable[Union[str, tuple, list]]
                            ) -> List[Entry]:
        """As :meth:`procreg.client.Client.register_many`."""
        return await self._do(*rq.register_many(self._core, items))

    async def list_page(self, prefix: str = "", limit: int = 1000,
                        after: Optional[str] = None,
                        scope: Optional[str] = None) -> List[Entry]:
        """One page of ``list``."""
        return await self._do(*rq.list_page(self._core, prefix, limit, after,
                                            scope))

    async def list(self, prefix: str = "", page_size: int = 1000, *,
                   scope: Optional[str] = None) -> AsyncIterator[Entry]:
        """Every entry under ``prefix``, page by page: ``async for``;
        ``scope`` as :meth:`procreg.client.Client.list`."""
        after = None
        while True:
            page = await self.list_page(prefix, page_size, after, scope)
            if not page:
                return
            for e in page:
                yield e
            after = page[-1].name

    async def nodes(self) -> List[Node]:
        """As :meth:`procreg.client.Client.nodes`."""
        return await self._do(*rq.nodes(self._core))

    async def stats(self) -> Stats:
        """The daemon's counters and gauges."""
        return await self._do(*rq.stats(self._core))

    async def evict(self, name: str) -> bool:
        """As :meth:`procreg.client.Client.evict`."""
        return await self._do(*rq.evict(self._core, name))

    async def subscribe(self, prefix: str = "", *, groups: bool = False,
                        since: Optional[int] = None,
                        scope: Optional[str] = None) -> Subscription:
        """As :meth:`procreg.client.Client.subscribe`."""
        sink = _Buffer()
        sub, res = await self._do(*rq.subscribe(self._core, prefix, groups,
                                                since, sink, scope))
        return Subscription(self, sub, res, sink)

    async def unsubscribe(self, sub: Union[int, Subscription]) -> bool:
        """End a subscription; True if it was active."""
        if isinstance(sub, Subscription):
            sub = sub.sub
        s = self._core.subs.get(sub)
        if s is None:
            return False
        s.sink.clear()
        try:
            return await self._do("unsubscribe", [s.server], None)
        finally:
            self._core.end_sub(sub)
            s.sink.clear()

    # -- notifications --------------------------------------------------------
    async def next_event(self, timeout: Optional[float] = None
                         ) -> Optional[Notification]:
        """The next notification, waiting up to ``timeout`` seconds (None:
        for ever); None when none came.  ConnectionClosed once the
        connection is lost without auto_reconnect."""
        return await self._events.take(None, timeout)

    async def events(self, timeout: Optional[float] = None
                     ) -> AsyncIterator[Notification]:
        """``async for`` over notifications; stops after ``timeout``
        seconds without one (None: never)."""
        while True:
            ev = await self.next_event(timeout)
            if ev is None:
                return
            yield ev

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self.events()

    # -- serving and holding ----------------------------------------------------
    def serve(self, name: str, *, register: bool = False,
              pass_call: bool = False
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: answer calls to ``name`` with the function (a plain
        function or a coroutine function), each call in a task of its own.
        The function gets the payload (or, with ``pass_call``, the
        :class:`Call`); a ServerError it raises is replied as that error,
        any other exception as code ``"error"``.  Register the name with
        :meth:`register` (or :meth:`serve_name`, which does both)."""
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[name] = (lambda call: fn(call)) if pass_call \
                else (lambda call: fn(call.payload))
            return fn
        return deco

    async def serve_name(self, name: str, fn: Callable[..., Any],
                         value: Any = _NO_VALUE, **register_opts: bool
                         ) -> Union[Entry, Queued]:
        """Install ``fn`` as the handler of ``name`` and register it."""
        self.serve(name)(fn)
        return await self.register(name, value, **register_opts)

    async def _serve_one(self, handler: Callable[[Call], Any],
                         call: Call) -> None:
        try:
            result = handler(call)
            if inspect.isawaitable(result):
                result = await result
            error = None
        except ServerError as e:
            result, error = None, e
        except Exception as e:
            result, error = None, ("error", "%s: %s" % (type(e).__name__, e))
        with contextlib.suppress(NotFound, ConnectionClosed, Timeout,
                                 ConnectError):
            await self.reply(call, result, error=error)

    @contextlib.asynccontextmanager
    async def hold(self, name: str, value: Any = _NO_VALUE, *,
                   wait: bool = True, timeout: Optional[float] = None,
                   allow_replacement: bool = False,
                   scope: Optional[str] = None) -> AsyncIterator[Hold]:
        """``async with client.hold(name):`` as
        :meth:`procreg.client.Client.hold`."""
        res = await self.register(name, value, queue=wait,
                                  allow_replacement=allow_replacement,
                                  scope=scope)
        if isinstance(res, Queued):
            ev = await self._events.take(
                lambda e: type(e) is Acquired and e.name == name,
                self.timeout if timeout is None else timeout)
            if ev is None:
                with contextlib.suppress(ProcregError):
                    await self.unregister(name)
                raise Timeout("%s did not pass to us in time" % name)
            res = ev.entry
        h = Hold(name, res)
        try:
            yield h
        finally:
            with contextlib.suppress(NotFound, NotOwner, Stale,
                                     ConnectionClosed):
                await self.unregister(name, h.entry.gen)

    def pipeline(self) -> "Pipeline":
        """A batch of requests written at once; see :class:`Pipeline`."""
        return Pipeline(self)


class Pipeline:
    """Requests queued with the client's method names and written in one
    write by ``await p.execute()``, which returns the results in order."""

    def __init__(self, client: Client) -> None:
        from .client import Pipeline as _Sync
        self._client = client
        self._reqs: List[tuple] = []
        self._sync = _Sync
        # Borrow the synchronous pipeline's argument handling.
        self._shim = _Sync.__new__(_Sync)
        self._shim._reqs = self._reqs

    def __getattr__(self, method: str) -> Callable[..., "Pipeline"]:
        add = getattr(self._shim, method)

        def queue(*args: Any) -> "Pipeline":
            add(*args)
            return self
        return queue

    async def execute(self, raise_on_error: bool = True) -> List[Any]:
        """Write every queued request at once; their results in order."""
        cl = self._client
        reqs = list(self._reqs)
        self._reqs.clear()
        loop = asyncio.get_running_loop()
        if not reqs:
            return []
        if not cl._ready.is_set():
            await cl.stats()      # waits for a reconnect, or raises
        t = cl._transport
        if t is None or t.is_closing():
            raise ConnectionClosed("not connected")
        core = cl._core
        futs = []
        parts = []
        extra = 0.0
        for build, args in reqs:
            method, params, hook, ex = build(core, *args)
            extra = max(extra, ex)
            msgid, data = core.pack(method, params, hook)
            f = loop.create_future()
            cl._futs[msgid] = f
            futs.append((msgid, f))
            parts.append(data)
        t.write(b"".join(parts))
        deadline = loop.time() + cl.timeout + extra
        timers = [loop.call_at(deadline, _expire, f) for _, f in futs]
        out: List[Any] = []
        first: Optional[BaseException] = None
        try:
            for _, f in futs:
                try:
                    out.append(await f)
                except ProcregError as e:
                    first = first or e
                    out.append(e)
        finally:
            for tm in timers:
                tm.cancel()
            for msgid, _ in futs:
                if cl._futs.pop(msgid, None) is not None:
                    core.pending.pop(msgid, None)
        if first is not None and raise_on_error:
            raise first
        return out


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(Timeout("no answer from the daemon in time"))


async def connect(path: Optional[str] = None, auto_reconnect: bool = False,
                  timeout: float = c.DEFAULT_TIMEOUT, *,
                  label: Optional[str] = None,
                  max_message: int = c.DEFAULT_MAX_MESSAGE,
                  reconnect_max: float = c.RECONNECT_MAX,
                  on_reconnect: Optional[Callable[[Reconnected], Any]] = None
                  ) -> Client:
    """Connect to procregd and return an asyncio :class:`Client`; the
    arguments are those of :func:`procreg.connect`."""
    cl = Client(path, auto_reconnect=auto_reconnect, timeout=timeout,
                label=label, max_message=max_message,
                reconnect_max=reconnect_max, on_reconnect=on_reconnect)
    await cl._open_and_restore()
    return cl
