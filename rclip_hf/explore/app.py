"""The web app of `rclip-hf explore`: a FastAPI JSON API (documented at `/docs`, FastAPI's Swagger page with Swagger UI
5.36.0 shipped in `static/swagger-ui/`, Apache-2.0) and a page over it with Leaflet 1.9.4 (`static/leaflet/`, BSD-2).

Every request needs the app's token: `?token=...` in the URL (which then sets a cookie, as Jupyter does), the
cookie, or an `Authorization: token ...` header. Scenes are addressed by their id in the index (`catalog.scene_id`),
windows by their position in the index; no path is ever taken from a request except the export path the user
chooses. The page renders every name as text, and its Content-Security-Policy allows no inline or foreign script.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from transformers import CLIPModel, ProcessorMixin

from ..errors import UserError
from ..images import ImageReadError, decode_dataset_image
from ..inference import EmbeddingIndex
from ..loading import resolve_model
from .labels import DEFAULT_LABEL_SET
from .session import ExploreError, Explorer, export_geojson
from .tiles import SceneUnavailable, TileReader

STATIC = Path(__file__).parent / "static"
#: Largest image upload accepted by the image query (bytes).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Room for the multipart form's own bytes around the image.
MULTIPART_SLACK = 64 * 1024


class SearchRequest(BaseModel):
    """A text query (`text`), or the labelled examples (`examples: true`)."""

    text: str | None = None
    examples: bool = False
    k: int = Field(50, ge=1, le=10_000)
    merge: bool = False


class LabelRequest(BaseModel):
    id: str
    label: Literal["positive", "negative"] | None = None


class ExportRequest(BaseModel):
    path: str
    format: Literal["geojson", "parquet", "labels"] = "geojson"
    source: Literal["detections", "hits"] = "detections"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    merge: bool = False


def create_app(index: EmbeddingIndex | str | Path, model: CLIPModel | str | Path,
               processor: ProcessorMixin | None = None, *, labels: str = DEFAULT_LABEL_SET, token: str | None = None,
               basemap: str | None = None, negative_weight: float = 0.5,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, storage_options: Mapping[str, str] | None = None) -> FastAPI:
    """The explore app (an ASGI application) over `index` (an index folder or object-store URI, opened with
    `storage_options`, or an open index) searched with `model`, keeping labels in the label set `labels` of the
    index's label table. `token` (default: a random one, `app.state.token`) guards every request; `basemap` is an
    XYZ URL template drawn under the scenes."""
    index = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.open(index, storage_options)
    model, processor = resolve_model(model, processor)
    explorer = Explorer(index, model, processor, index.directory, labels, negative_weight)
    tiles = TileReader()
    token = check_token(token) if token is not None else secrets.token_urlsafe(32)
    app = FastAPI(title="rclip-hf explore", summary="Find things in imagery: query, label, train, review, export.",
                  docs_url=None, redoc_url=None, on_shutdown=[tiles.close])
    app.state.token, app.state.explorer = token, explorer
    policy = "default-src 'self'; img-src 'self' data: blob:" + (f" {_origin(basemap)}" if basemap else "") + \
             "; style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'" \
             "; frame-ancestors 'none'"

    app.add_middleware(UploadLimit, path="/api/search/image", limit=max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(TokenGuard, token=token, policy=policy)  # the outer one: first to see a request

    @app.exception_handler(ExploreError)
    async def bad_request(request: Request, error: ExploreError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:  # FastAPI's page, with Swagger UI from the package instead of a CDN
        return get_swagger_ui_html(openapi_url="openapi.json", title="rclip-hf explore API",
                                   swagger_js_url="static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="static/swagger-ui/swagger-ui.css", swagger_favicon_url="data:,")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """The index, the model and the label set."""
        return {"items": len(index), "dim": index.dim, "windows": explorer.catalog.windowed, "label_set": labels,
                "basemap": basemap, "negative_weight": negative_weight, "trained": explorer.probabilities is not None,
                "model": getattr(model, "name_or_path", "")}

    @app.get("/api/scenes")
    def scenes() -> list[dict[str, Any]]:
        """The index's scenes: id, name, pixel or lon/lat space, size, bounds, number of windows."""
        return [scene.as_json() for scene in explorer.catalog.scenes.values()]

    def scene(scene_id: str) -> Any:
        if scene_id not in explorer.catalog.scenes:
            raise HTTPException(404, f"no scene with id {scene_id!r} in the index")
        return explorer.catalog.scenes[scene_id]

    @app.get("/api/scenes/{scene_id}/size")
    def scene_size(scene_id: str) -> dict[str, int]:
        """Width and height of a scene in pixels."""
        try:
            width, height = tiles.size(scene(scene_id))
        except SceneUnavailable as error:
            raise HTTPException(404, str(error)) from None
        return {"width": width, "height": height}

    @app.get("/api/scenes/{scene_id}/tiles/{z}/{x}/{y}.png", responses={200: {"content": {"image/png": {}}}})
    def tile(scene_id: str, z: int, x: int, y: int) -> Response:
        """A map tile: web-mercator XYZ for a georeferenced scene, pixel space for the others; 404 with the reason
        when the scene's file is gone or the tile is outside it."""
        if not -12 <= z <= 24:
            raise HTTPException(404, f"zoom {z} is outside -12..24")
        try:
            return Response(tiles.tile(scene(scene_id), z, x, y), media_type="image/png")
        except SceneUnavailable as error:
            raise HTTPException(404, str(error)) from None

    @app.get("/api/windows/{position}/thumbnail.png", responses={200: {"content": {"image/png": {}}}})
    def thumbnail(position: int) -> Response:
        """The window at `position` of the index, at most 128 px."""
        if not 0 <= position < len(index):
            raise HTTPException(404, f"no window at position {position} (the index has {len(index)})")
        try:
            data = tiles.thumbnail(explorer.catalog.scene_of_position(position), explorer.catalog.window(position))
        except SceneUnavailable as error:
            raise HTTPException(404, str(error)) from None
        return Response(data, media_type="image/png")

    @app.post("/api/search")
    def search_text(request: SearchRequest) -> dict[str, Any]:
        """Top-k windows for a text query or for the labelled examples (the positives' mean minus `negative_weight`
        times the negatives')."""
        if request.examples == bool(request.text):
            raise ExploreError("give either a query text or examples: true")
        hits = explorer.search(None if request.examples else request.text, request.k, request.merge)
        return {"hits": explorer.hits_json(hits)}

    @app.post("/api/search/image")
    async def search_image(image: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 50,
                           merge: Annotated[bool, Form()] = False) -> Any:
        """Top-k windows for an uploaded image (size-limited, decoded by the package's image rule)."""
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise ExploreError(f"the image is larger than {max_upload_bytes} bytes")
        try:
            query = decode_dataset_image({"bytes": data, "path": None})
        except ImageReadError as error:
            raise ExploreError(f"not an image: {' '.join(str(error).split())}") from None
        hits = explorer.search(query, max(1, min(k, 10_000)), merge)
        return {"hits": explorer.hits_json(hits)}

    @app.get("/api/labels")
    def get_labels() -> dict[str, Any]:
        """The label set's labels: id, label, label set, time, and the window's position."""
        rows = explorer.labels.rows()
        return {"label_set": labels, "labels": [{**row, "position": explorer.catalog.position_of.get(row["id"])}
                                                for row in rows]}

    @app.post("/api/labels")
    def set_label(request: LabelRequest) -> dict[str, Any]:
        """Label a window `positive` or `negative`, or clear its label (`null`); committed to the index at once (503
        with the reason when the index's storage refuses the write)."""
        if request.id not in explorer.catalog.position_of:
            raise HTTPException(404, f"no window with id {request.id!r} in the index")
        try:
            explorer.labels.set(request.id, request.label)
        except UserError as error:
            raise HTTPException(503, f"the label was not saved: {error}") from None
        return {"id": request.id, "label": request.label}

    @app.post("/api/train")
    def train() -> dict[str, Any]:
        """Fit the classifier on the labelled windows and score every window of the index."""
        return {**explorer.train(), "uncertain": explorer.hits_json(explorer.uncertain())}

    @app.get("/api/detections")
    def detections(threshold: float = Query(0.5, ge=0.0, le=1.0), merge: bool = False,
                   limit: int = Query(500, ge=1, le=10_000)) -> dict[str, Any]:
        """Windows whose probability is at least `threshold`, best first (merged into regions with `merge`)."""
        total, hits = explorer.detections(threshold, merge, limit)
        return {"total": total, "hits": explorer.hits_json(hits)}

    @app.get("/api/uncertain")
    def uncertain(count: int = Query(8, ge=1, le=100)) -> dict[str, Any]:
        """Unlabelled windows closest to the classifier's decision boundary: the ones to label next."""
        return {"hits": explorer.hits_json(explorer.uncertain(count))}

    @app.get("/api/scenes/{scene_id}/scores")
    def scores(scene_id: str, source: Literal["query", "classifier"] = "query") -> dict[str, Any]:
        """The heat map of a scene: every window's score for the latest query or the classifier, from the index."""
        info = scene(scene_id)
        values = explorer.query_scores() if source == "query" else explorer.probabilities_or_error()
        positions = info.positions.tolist()
        boxes = explorer.catalog.boxes[info.positions].tolist() if explorer.catalog.windowed else [None] * len(positions)
        items = explorer.index.items(positions) if info.crs is not None else [{}] * len(positions)
        return {"source": source, "min": float(values.min()), "max": float(values.max()),
                "windows": [{"position": position, "window": box, "score": float(values[position]),
                             "bbox": None if not item.get("bbox") else list(item["bbox"].values())}
                            for position, box, item in zip(positions, boxes, items)]}

    @app.get("/api/export/geojson")
    def geojson(source: Literal["detections", "hits"] = "detections", threshold: float = Query(0.5, ge=0, le=1),
                merge: bool = False) -> dict[str, Any]:
        """The GeoJSON an export writes: `lonlat` (RFC 7946) and `pixel` (scenes without a CRS) collections."""
        lonlat, pixel = export_geojson(explorer.export_hits(source, threshold, merge))
        return {"lonlat": lonlat, "pixel": pixel}

    @app.post("/api/export")
    def export(request: ExportRequest) -> dict[str, Any]:
        """Write the detections or the latest hits (GeoJSON, GeoParquet) or the labels (Parquet) to `path`."""
        hits = [] if request.format == "labels" else explorer.export_hits(request.source, request.threshold,
                                                                           request.merge)
        return {"files": explorer.export(request.path, request.format, hits)}

    return app


class TokenGuard:
    """ASGI middleware: a request without the token (query `token`, the cookie it sets, or an `Authorization: token`
    header) gets 403; answers get `nosniff` and, but for the Swagger page (inline script), the page's policy."""

    def __init__(self, app: Any, token: str, policy: str):
        self.app, self.token, self.policy = app, token, policy
        self.cookie = f"rclip_explore_{hashlib.sha256(token.encode()).hexdigest()[:12]}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        given = connection.query_params.get("token")
        header = connection.headers.get("authorization", "")
        candidates = (given, connection.cookies.get(self.cookie), header[6:] if header.startswith("token ") else None)
        if not any(candidate and secrets.compare_digest(candidate.encode(), self.token.encode())
                   for candidate in candidates):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = PlainTextResponse("403 forbidden: open the URL that `rclip-hf explore` printed (it carries "
                                         "the token)", status_code=403)
            await response(scope, receive, send)
            return
        policy = scope["path"] != "/docs"

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("X-Content-Type-Options", "nosniff")
                if policy:
                    headers.append("Content-Security-Policy", self.policy)
                if given:
                    headers.append("Set-Cookie", f"{self.cookie}={self.token}; HttpOnly; Path=/; SameSite=Strict")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UploadLimit:
    """ASGI middleware: a request to `path` must declare its size (Content-Length) and stay within `limit` bytes,
    checked before its body is read (FastAPI parses a form before the endpoint runs); else 400."""

    def __init__(self, app: Any, path: str, limit: int):
        self.app, self.path, self.limit = app, path, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            length = HTTPConnection(scope).headers.get("content-length", "")
            if not length.isdigit() or int(length) > self.limit:
                reason = ("the upload has no Content-Length" if not length.isdigit()
                          else f"the image is larger than {self.limit - MULTIPART_SLACK} bytes")
                await JSONResponse({"detail": reason}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def check_token(token: str) -> str:
    """`token` when it is at least 16 URL-safe characters (letters, digits, '-', '_', '.', '~'), else `UserError`."""
    if not re.fullmatch(r"[A-Za-z0-9_.~-]{16,}", token):
        raise UserError("--token", "give at least 16 URL-safe characters (letters, digits, '-', '_', '.', '~')",
                        "or leave it out for a random one")
    return token


def _origin(template: str) -> str:
    """`https://host` of a URL template (what the page's policy lets images come from)."""
    scheme, _, rest = template.partition("://")
    host = rest.split("/", 1)[0].replace("{s}", "*")
    return f"{scheme}://{host}" if rest else template


__all__ = ["MAX_UPLOAD_BYTES", "create_app"]
