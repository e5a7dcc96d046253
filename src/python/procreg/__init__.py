"""procreg: a Python client of procregd, the procreg process registry.

Synchronous::

    import procreg
    with procreg.connect() as c:
        c.register("worker/1", {"port": 8080})
        print(c.whereis("worker/1"))

asyncio: ``client = await procreg.aio.connect()`` (see :mod:`procreg.aio`).

Errors are :class:`procreg.errors.ProcregError` subclasses, one per
protocol error code (``procreg.Taken``, ``procreg.NotFound``, ...) and
local ones (``procreg.ConnectionClosed``, ``procreg.Timeout``, ...).
Entries and notifications are the dataclasses of :mod:`procreg.types`.
The protocol is proto/PROTOCOL.md of the procreg sources (procreg(7)).
"""
from . import aio, errors, types
from ._core import default_socket_path
from .client import Client, Hold, Pipeline, Subscription, connect
from .errors import *  # noqa: F401,F403
from .types import *  # noqa: F401,F403

__version__ = "0.1.0"
__all__ = (["connect", "Client", "Hold", "Pipeline", "Subscription",
            "default_socket_path", "aio", "errors", "types"]
           + errors.__all__ + types.__all__)
