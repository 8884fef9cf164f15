"""`rclip-hf explore --index INDEX --model MODEL`: start the explore app on 127.0.0.1 and print its URL (with the
token). Bad input (an unknown index or model, an index of another model, a port in use, a public --host without
--token) is one line `error: ...` and exit 2."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import sys
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..arguments import DataclassArgumentParser
from ..errors import UserError, entry_point
from .labels import DEFAULT_LABEL_SET, check_label_set

#: glibc malloc arenas of the server (as MALLOC_ARENA_MAX=2): each of Lance's reader threads otherwise keeps the freed
#: buffers of a scan of the embeddings in an arena of its own, and the resident memory grows by hundreds of MiB over
#: a few trainings (benchmarks/explore.py: 1835 -> 1422 MiB at the end, peak 1942 -> 1761 MiB, at 500k windows)
MALLOC_ARENAS = 2


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ExploreOptions:
    """Options of `rclip-hf explore`."""

    index: str = field(metadata=_help(
        "Index folder or object-store URI (`rclip-hf index`, of images or of windows of scenes)"))
    model: str = field(metadata=_help("The model the index was built with (folder or Hub id)"))
    host: str = field(default="127.0.0.1", metadata=_help("Address to listen on; other than loopback needs --token"))
    port: int = field(default=0, metadata=_help("Port to listen on (0: a free one)"))
    open: bool = field(default=False, metadata=_help("Open the app in the default web browser"))
    labels: str = field(default=DEFAULT_LABEL_SET, metadata=_help(
        "Label set: keeps several sets of labels apart (all kept in the index's table `labels`)"))
    token: str | None = field(default=None, metadata=_help("The token requests must carry (default: a random one)"))
    basemap: str | None = field(default=None, metadata=_help(
        "XYZ URL template of an online basemap drawn under the scenes, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png"))
    device: str | None = field(default=None, metadata=_help("Device, e.g. cpu or cuda (default: cuda when available)"))
    negative_weight: float = field(default=0.5, metadata=_help(
        "Weight of the negatives' mean in a query by examples (as search --negative_weight)"))
    storage_option: list[str] | None = field(default=None, metadata={
        "help": "Object-store option KEY=VALUE (repeatable), as for `rclip-hf index`", "nargs": "+",
        "action": "extend"})


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; `UserError` when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on such sockets, and without it every answer sent as
    # headers then body waits for the client's delayed ACK (about 40 ms per request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"--port {port}", f"cannot listen on {host}:{port} ({error.strerror or error})",
                        "the port is in use: choose another one, or --port 0 for a free one") from None
    sock.listen(128)
    return sock


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas of this process, unless MALLOC_ARENA_MAX says otherwise; a no-op without glibc."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, load the index and model, bind the port, print the URL and serve until interrupted."""
    cap_malloc_arenas()  # before any thread allocates
    import uvicorn

    from ..commands.options import storage_options
    from ..inference import EmbeddingIndex
    from ..loading import load_model, resolve_device
    from .app import check_token, create_app

    parser = DataclassArgumentParser(ExploreOptions, prog="rclip-hf explore", description=__doc__.split("\n\n")[0])
    (options,) = parser.parse_args_into_dataclasses(args=list(sys.argv[1:] if argv is None else argv))
    if not _loopback(options.host) and not options.token:
        raise UserError(f"--host {options.host}", "not a loopback address: anyone who reaches it could use the app",
                        "give --token SECRET too, or keep the default 127.0.0.1")
    check_label_set(options.labels)  # the label-set name, the token and storage options: checked before loading
    if options.token is not None:
        check_token(options.token)
    storage = storage_options(options.storage_option)
    try:
        index = EmbeddingIndex.open(options.index, storage)
    except FileNotFoundError as error:
        raise UserError(f"--index {options.index}", str(error),
                        "give a folder or object-store URI made by `rclip-hf index`") from None
    model, processor = load_model(options.model, device=resolve_device(options.device))
    index.check_model(model)
    sock = bind(options.host, options.port)
    app = create_app(index, model, processor, labels=options.labels, token=options.token, basemap=options.basemap,
                     negative_weight=options.negative_weight)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={app.state.token}"
    print(f"rclip-hf explore: {len(index)} items of {options.index}, label set {options.labels!r}\n"
          f"open {url}\n(Ctrl-C stops it)", flush=True)
    if options.open:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
