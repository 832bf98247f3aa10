"""``pyflux-mnist serve``: find or train a model, bind the socket ourselves, run uvicorn until Ctrl-C.

Binding before uvicorn starts lets a busy port be one clear error line and ``--port 0`` pick a free port
(the tests use it: the URL printed is the one to open).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path

from ..backends import REFERENCE
from ..blas import set_blas_threads
from ..errors import PyfluxError
from ..training import train
from .app import Server, create_app, data_problem, last_model_path
from .guard import LOOPBACK_NAMES, allowed_hosts
from .state import Loaded, file_loaded, save_trained

#: The model ``serve`` trains when it has none: a few seconds on NumPy, about 97 % on the test set.
START_RECIPE = "keras"


class QuietCancel(logging.Filter):
    """Drops uvicorn's traceback for a request cut off by Ctrl-C (a picture still being drawn when the
    grace time ends): stopping is said in one line; uvicorn's own line says how many were cut off."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address, IPv4-mapped ones included (``::ffff:127.0.0.1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(canonical(host)).is_loopback
    except ValueError:
        return False


def canonical(address: str) -> str:
    """An IP address as a browser writes it (an IPv4-mapped IPv6 address as the IPv4 one)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or one clear error line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PyfluxError(f"cannot listen on {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    # The protocol number matters: asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (measured: 48 ms vs 0.3 ms).
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        hint = (
            f" (another server is running there: try --port {port + 1})"
            if e.errno == errno.EADDRINUSE
            else ""
        )
        raise PyfluxError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    sock.set_inheritable(True)
    return sock


def lan_names() -> list[str]:
    """This machine's name and addresses: what a browser on the network may put in ``Host``."""
    names = {socket.gethostname()}
    with contextlib.suppress(OSError):
        names.update(str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None))
    return sorted(n if ":" not in n else f"[{n}]" for n in names)


def initial_model(model_path: str | None, data_dir: str | None, say: Callable[[str], None]) -> Loaded:
    """The given model file; else the last model ``serve`` trained; else train one now (and keep it)."""
    if model_path is not None:
        return file_loaded(Path(model_path))
    last = last_model_path()
    if last.exists():
        try:
            loaded = file_loaded(last, "last trained here")
            say(f"using the last model trained here: {last}")
            return loaded
        except PyfluxError as e:
            say(f"the last model trained here cannot be used ({e}); training a new one")

    say(f"no model given: training one on NumPy ({START_RECIPE} recipe, 1 epoch, a few seconds)...")
    result = train(START_RECIPE, REFERENCE, epochs=1, data_dir=data_dir)
    say(f"test accuracy {result.test_accuracy:.4f}; kept in {last} for next time")
    try:
        save_trained(result, last)
    except (OSError, PyfluxError) as e:  # a read-only cache: serve it anyway, train again next time
        say(f"could not keep it in {last}: {getattr(e, 'strerror', None) or e}")
        stamp = time.strftime("%Y-%m-%d %H:%M")
        return Loaded(result.model, 1, "trained at start", stamp, result.losses, result.epoch_steps)
    return file_loaded(last, "trained at start")


def serve(
    model_path: str | None,
    host: str,
    port: int,
    open_browser: bool,
    data_dir: str | None,
    say: Callable[[str], None],
) -> None:
    """Serve the page until Ctrl-C (which the caller turns into one line and exit 0)."""
    import uvicorn  # the server itself: only when serving (the app and its tests need no uvicorn)

    sock = bind(host, port)  # before the model: a busy port fails at once
    port = sock.getsockname()[1]
    wildcard = host in ("0.0.0.0", "::", "")
    # The address bound, not the name given: ``127.1`` is 127.0.0.1 once resolved, and a browser sends
    # it so in ``Host`` (``::ffff:127.0.0.1`` too).
    bound = canonical(str(sock.getsockname()[0]))
    local = is_loopback(host) or is_loopback(bound)
    if not local:
        say(
            f"Warning: listening on {host}, not only this machine: anyone who can reach it can use the page "
            "and start training runs. Use the default --host 127.0.0.1 unless you mean it."
        )
    loaded = initial_model(model_path, data_dir, say)
    problem = data_problem(data_dir)
    if problem is not None:  # said once, here, rather than found out later from each picture
        say(
            f"Warning: {problem}. Until then, Look inside cannot show the back-query and the confusion "
            "matrix, "
            "and Train cannot run."
        )
    # Predictions are small products: one BLAS thread answers faster than several competing for the cores
    # (training runs in its own process with all of them).
    set_blas_threads(1)
    server = Server(loaded, data_dir=data_dir)
    bracketed = bound if ":" not in bound else f"[{bound}]"
    extra = [*lan_names(), *LOOPBACK_NAMES] if wildcard else [*LOOPBACK_NAMES, bracketed] if local else ()
    hosts = allowed_hosts(host, port, extra)
    # Shown as given, except a loopback address spelled otherwise (127.1): as the address bound.
    named = host in ("127.0.0.1", "localhost", "::1") or not local
    shown = "127.0.0.1" if wildcard else (host if ":" not in host else f"[{host}]") if named else bracketed
    url = f"http://{shown}:{port}/"
    config = uvicorn.Config(
        create_app(server, hosts),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        lifespan="off",
    )
    runner = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(QuietCancel())
    exit_handler = runner.handle_exit

    def handle_exit(sig: int, frame: object) -> None:
        # Every open page holds an event stream: end them at once (they look at `closing`), so the
        # graceful shutdown finds no stream left to cancel (a traceback on stderr, not one line).
        server.closing = True
        exit_handler(sig, frame)  # type: ignore[arg-type]

    runner.handle_exit = handle_exit  # type: ignore[method-assign]
    print(f"serving {loaded.model.recipe.name} on {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        runner.run(sockets=[sock])
    finally:
        server.close()
        sock.close()
    if not runner.started:
        raise PyfluxError("the server did not start (see the message above)")
