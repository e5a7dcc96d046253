"""Exceptions of the procreg client.

Every exception the package raises derives from :class:`ProcregError`.
The daemon's answers (the protocol's error codes, PROTOCOL.md section 6)
are :class:`ServerError` subclasses, one per code; an error code the
package does not know (one a callee chose in ``reply``, or one of a later
protocol) is a :class:`RemoteError`.  Local failures have their own
classes: :class:`ConnectError`, :class:`ConnectionClosed`,
:class:`Timeout` and :class:`ProtocolError`.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "ProcregError", "ServerError", "BadRequest", "UnknownMethod", "Taken",
    "NotFound", "NotOwner", "Busy", "Limit", "TooLarge", "Forbidden",
    "CallTimeout", "DownError", "Stale", "Unavailable", "RemoteError",
    "ConnectError",
    "ConnectionClosed", "Timeout", "ProtocolError", "from_wire",
]


class ProcregError(Exception):
    """Base class of every error raised by the procreg package."""


class ServerError(ProcregError):
    """An error answered by the daemon (or by a callee through ``reply``).

    ``code`` is the protocol's error code (a str), ``message`` the
    daemon's sentence for people: never parse it.
    """

    code: str = ""

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(f"{self.code}: {message}" if message else self.code)


class BadRequest(ServerError):
    """``bad_request``: wrong params, an invalid name, or a malformed
    request."""
    code = "bad_request"


class UnknownMethod(ServerError):
    """``unknown_method``: the daemon does not know the method (an older
    protocol)."""
    code = "unknown_method"


class Taken(ServerError):
    """``taken``: the name is registered already (or we are a member of
    the group already)."""
    code = "taken"


class NotFound(ServerError):
    """``not_found``: no such name, connection, membership or pending
    call."""
    code = "not_found"


class NotOwner(ServerError):
    """``not_owner``: another connection registered the name."""
    code = "not_owner"


class Busy(ServerError):
    """``busy``: the owner's outbound buffer is full; nothing was queued,
    retry later."""
    code = "busy"


class Limit(ServerError):
    """``limit``: a per-connection or per-user limit of the daemon was
    reached."""
    code = "limit"


class TooLarge(ServerError):
    """``too_large``: the answer (or a message) would exceed
    max_message."""
    code = "too_large"


class Forbidden(ServerError):
    """``forbidden``: the daemon's access policy said no."""
    code = "forbidden"


class CallTimeout(ServerError, TimeoutError):
    """``timeout``: the daemon's verdict: a call got no reply in time, or
    an awaited name was not registered in time."""
    code = "timeout"


class DownError(ServerError):
    """``down``: the callee went away (or the name changed hands) before
    it replied."""
    code = "down"


class Stale(ServerError):
    """``stale``: the name's entry has another generation than the one
    given."""
    code = "stale"


class Unavailable(ServerError):
    """``unavailable`` (protocol 3): the cluster is not there: the daemon
    runs without ``--etcd``, cannot reach etcd in time, or its node has
    no lease."""
    code = "unavailable"


class RemoteError(ServerError):
    """An error code this package does not know: one a callee chose in
    ``reply``, or one of a later protocol.  ``code`` tells which."""


class ConnectError(ProcregError, ConnectionError):
    """The daemon cannot be reached (no socket, refused, bad path)."""


class ConnectionClosed(ProcregError, ConnectionError):
    """The connection was lost (or closed) before the answer came.  A
    request may or may not have been applied by the daemon."""


class Timeout(ProcregError, TimeoutError):
    """No answer within the client's own time limit."""


class ProtocolError(ProcregError):
    """The daemon sent something that is not the protocol (garbage, an
    oversized object, a malformed message); the connection is closed."""


_BY_CODE: Dict[str, Type[ServerError]] = {
    cls.code: cls for cls in (BadRequest, UnknownMethod, Taken, NotFound,
                              NotOwner, Busy, Limit, TooLarge, Forbidden,
                              CallTimeout, DownError, Stale, Unavailable)
}


def from_wire(error: object) -> ServerError:
    """The exception for a response's ``error`` slot (``[code, message]``)."""
    if (isinstance(error, (list, tuple)) and len(error) >= 1
            and isinstance(error[0], str)):
        code = error[0]
        msg = error[1] if len(error) > 1 and isinstance(error[1], str) else ""
    else:
        return RemoteError(repr(error)[:200], code="invalid_error")
    cls = _BY_CODE.get(code)
    if cls is None:
        return RemoteError(msg, code=code)
    return cls(msg)
