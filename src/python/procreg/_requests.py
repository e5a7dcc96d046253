"""Request builders shared by the synchronous client, its pipelines and
the asyncio client: each returns (method, params, hook, extra_wait), the
hook converting the result (and keeping auto-reconnect's books) when the
response is parsed, extra_wait the seconds the daemon itself may take
(call, await) on top of the client's timeout."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple, Union

from . import _core as c

Req = Tuple[str, list, Any, float]
_NO_VALUE = c._MISSING


def hello(core: c.Core, label: Optional[str]) -> Req:
    return ("hello", [] if label is None else [label], core.hook_hello, 0.0)


def register(core: c.Core, name: str, value: Any, queue: bool,
             allow_replacement: bool, replace: bool,
             scope: Optional[str]) -> Req:
    has_value = value is not _NO_VALUE
    v = value if has_value else None
    params, opts = c.register_params(name, v, has_value, queue,
                                     allow_replacement, replace, scope)
    return ("register", params, core.hook_register(name, has_value, v, opts),
            0.0)


def unregister(core: c.Core, name: str, gen: Optional[int]) -> Req:
    return ("unregister", [name] if gen is None else [name, gen],
            core.hook_forget_name(name) if core.auto else None, 0.0)


def whereis(core: c.Core, name: str, scope: Optional[str],
            consistent: bool) -> Req:
    return ("whereis", c.whereis_params(core, name, scope, consistent),
            c.conv_entry_or_none, 0.0)


def send(core: c.Core, target: Union[str, int], payload: Any,
         gen: Optional[int]) -> Req:
    return ("send", [target, payload] if gen is None
            else [target, payload, {"gen": gen}], None, 0.0)


def call(core: c.Core, target: Union[str, int], payload: Any,
         timeout: Optional[float]) -> Req:
    ms = c.seconds_to_ms(timeout, 5000)
    return ("call", [target, payload, max(1, ms)], None, ms / 1000.0)


def monitor(core: c.Core, target: Union[str, int]) -> Req:
    return ("monitor", [target], core.hook_monitor(target), 0.0)


def await_name(core: c.Core, name: str, timeout: Optional[float]) -> Req:
    ms = c.seconds_to_ms(timeout, 5000)
    return ("await", [name, ms], c.conv_entry, ms / 1000.0)


def queue(core: c.Core, name: str) -> Req:
    return ("queue", [name], c.conv_queue, 0.0)


def join(core: c.Core, group: str, value: Any) -> Req:
    has_value = value is not _NO_VALUE
    v = value if has_value else None
    return ("join", [group, v] if has_value else [group],
            core.hook_join(group, has_value, v), 0.0)


def leave(core: c.Core, group: str) -> Req:
    return ("leave", [group], core.hook_leave(group) if core.auto else None,
            0.0)


def members(core: c.Core, group: str) -> Req:
    return ("members", [group], c.conv_members, 0.0)


def publish(core: c.Core, group: str, payload: Any, echo: bool) -> Req:
    return ("publish", [group, payload] if echo
            else [group, payload, {"echo": False}], c.conv_publish, 0.0)


def update(core: c.Core, name: str, value: Any, gen: Optional[int]) -> Req:
    return ("update", [name, value] if gen is None else [name, value, gen],
            core.hook_update(name, value), 0.0)


def keys(core: c.Core, conn: int) -> Req:
    return ("keys", [conn], c.conv_keys, 0.0)


def register_many(core: c.Core, items: Iterable[Any]) -> Req:
    its = c.many_params(items)
    return ("register_many", [its], core.hook_register_many(its), 0.0)


def list_page(core: c.Core, prefix: str, limit: int,
              after: Optional[str], scope: Optional[str]) -> Req:
    return ("list", c.list_params(prefix, limit, after, scope),
            c.conv_entries, 0.0)


def nodes(core: c.Core) -> Req:
    return ("nodes", [], c.conv_nodes, 0.0)


def stats(core: c.Core) -> Req:
    return ("stats", [], c.conv_stats, 0.0)


def evict(core: c.Core, name: str) -> Req:
    return ("evict", [name], None, 0.0)


def reply(core: c.Core, call_id: Any, result: Any, error: Any) -> Req:
    sid = c.check_reply_target(core, call_id)
    return ("reply", c.reply_params(sid, result, error), None, 0.0)


def subscribe(core: c.Core, prefix: str, groups: bool, since: Optional[int],
              sink: Any, scope: Optional[str] = None) -> Req:
    opts: dict = {}
    if groups:
        opts["groups"] = True
    if since is not None:
        opts["since"] = since
    if scope is not None and scope != "local":
        opts["scope"] = scope
    return ("subscribe", [prefix, opts] if opts else [prefix],
            core.hook_subscribe(since, sink, scope == "cluster"), 0.0)
