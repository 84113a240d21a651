"""The explorer's web side: a Starlette app over :class:`~corrkit.viz.explore.model.Explorer`, served by uvicorn.

Starlette + uvicorn (extra ``explore``): a small, maintained ASGI toolkit whose only
requirement is ``anyio``, and the server most ASGI apps run on (with ``h11``); they start in
well under a second, need no build step and no template engine. The page (``static/``) is
plain HTML, CSS and JavaScript shipped inside the package: nothing is fetched from the
network, so it works offline. The JSON endpoints run the model work in Starlette's thread
pool (the explorer serializes engine calls); every bad request is a JSON ``{"error": ...}``
with a 4xx status, shown on the page.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

from corrkit.errors import CorrkitError, MissingExtraError
from corrkit.viz.explore.model import MAX_CODE_BYTES, Explorer, RequestError

STATIC = Path(__file__).parent / "static"


def require_extra() -> None:
    """One error line naming the extra when Starlette or uvicorn is missing."""
    import importlib.util

    for package in ("starlette", "uvicorn"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, "explore")


def check_host(host) -> str:
    """``localhost`` or an IPv4/IPv6 address literal (a hostname would be looked up, and could name any interface)."""
    text = str(host).strip()
    if text == "localhost":
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise CorrkitError(f"--host must be an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost, got {host!r}") \
            from None
    return text


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_app(explorer: Explorer):
    """The ASGI app: the page, its static files and the JSON API (``/api/...``)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def failed(exc: Exception) -> JSONResponse:
        status = getattr(exc, "status", 400) if isinstance(exc, CorrkitError) else 500
        message = str(exc) if isinstance(exc, CorrkitError) else f"internal error: {type(exc).__name__}: {exc}"
        return JSONResponse({"error": message}, status_code=status)

    async def answer(fn, *args) -> Response:
        try:
            out = await run_in_threadpool(fn, *args)
        except Exception as exc:  # a bad request is a 4xx; anything else a 500, never a dead server
            return failed(exc)
        return out if isinstance(out, Response) else JSONResponse(out)

    async def body_json(request) -> dict:
        data = await request.body()
        if len(data) > 4 * MAX_CODE_BYTES:
            raise RequestError("the request is too large", 413)
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            raise RequestError("the request body is not JSON") from None
        if not isinstance(obj, dict):
            raise RequestError("the request body must be a JSON object")
        return obj

    def need(obj: dict, *keys):
        missing = [k for k in keys if k not in obj]
        if missing:
            raise RequestError(f"the request lacks {', '.join(missing)}")
        return [obj[k] for k in keys]

    async def index(request):
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(request):
        return await answer(explorer.info)

    async def directions(request):
        q = request.query_params
        return await answer(lambda: {"directions": explorer.directions(q.get("source", ""), q.get("class", ""))})

    async def code(request):
        if request.method == "POST":
            try:
                data = await request.body()
            except Exception as exc:
                return failed(exc)
            return await answer(lambda: {"code": explorer.uploaded_code(data).astype(float).tolist()})
        q = request.query_params
        if q.get("kind", "seed") == "set":
            return await answer(lambda: {"code": explorer.set_code(q.get("class", ""), q.get("index", "0"))
                                         .astype(float).tolist()})
        if q.get("kind", "seed") != "seed":
            return failed(RequestError(f"kind must be seed or set, got {q.get('kind')!r}"))
        return await answer(lambda: {"code": explorer.prior_code(q.get("seed", "0")).astype(float).tolist()})

    async def posted(request, keys, fn):
        try:
            values = need(await body_json(request), *keys)
        except CorrkitError as exc:
            return failed(exc)
        return await answer(fn, *values)

    async def render(request):
        return await posted(request, ("code", "source", "sliders"), explorer.render)

    async def strip(request):
        def one(*args):
            out = explorer.strip(*args)
            out.pop("images")
            return out
        return await posted(request, ("code", "source", "sliders", "class", "index"), one)

    async def export(request):
        def zipped(*args):
            return Response(explorer.export(*args), media_type="application/zip",
                            headers={"Content-Disposition": 'attachment; filename="corrkit-explore.zip"'})
        return await posted(request, ("code", "source", "sliders", "class", "index"), zipped)

    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": f"{exc.detail} ({request.method} {request.url.path})"},
                            status_code=exc.status_code)

    routes = [Route("/", index), Route("/api/info", info), Route("/api/directions", directions),
              Route("/api/code", code, methods=["GET", "POST"]), Route("/api/render", render, methods=["POST"]),
              Route("/api/strip", strip, methods=["POST"]), Route("/api/export", export, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); an error line when it is taken."""
    host = check_host(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections (Linux)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise CorrkitError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def server(explorer: Explorer, sock: socket.socket):
    """A uvicorn server for ``explorer`` on ``sock``: ``.run(sockets=[sock])`` serves until Ctrl-C or
    ``.should_exit = True``."""
    import uvicorn

    config = uvicorn.Config(make_app(explorer), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def serve(explorer: Explorer, host: str, port: int, ready=None) -> None:
    """Serve until Ctrl-C or SIGTERM: uvicorn stops taking connections, finishes the open ones, and this returns."""
    sock = bind(host, port)
    try:
        srv = server(explorer, sock)
        if ready is not None:
            ready(sock.getsockname()[1])
        try:
            srv.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn has shut down gracefully, then re-raises the Ctrl-C it caught
            pass
    finally:
        sock.close()
