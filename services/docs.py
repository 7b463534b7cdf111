"""/docs (Swagger UI) and /redoc (ReDoc) from files on the API's own origin.

FastAPI's own pages load both from a public CDN, ReDoc's fonts from Google and a favicon from the framework's
site. Here the scripts come from the installed `fastapi-offline` package and Swagger UI starts from a script
file of ours, not an inline one, so the policy can refuse inline scripts. Styles may be inline: both viewers
style their components from script.

ReDoc 2 draws Redocly's logo from Redocly's CDN in its sidebar, whatever its options say. The policy would
block that, but the browser would still try; ReDoc is served with the logo's address emptied instead, and it
leaves out an image that does not load.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from aromatrack.services.web import STATIC_URL, VENDOR_DIR, VENDOR_URL, page_headers

REDOC_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_URL = "/docs/redoc.standalone.js"

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def redoc_without_remote_logo() -> bytes:
    script = (VENDOR_DIR / "redoc.standalone.js").read_bytes()
    if REDOC_LOGO_URL not in script:
        raise RuntimeError("the installed ReDoc no longer names its CDN logo where services.docs expects it")
    return script.replace(REDOC_LOGO_URL, b"data:,")


def add_docs(app: FastAPI, templates: Jinja2Templates) -> None:
    redoc_script = redoc_without_remote_logo()

    def page(request: Request, template: str, viewer: str) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return templates.TemplateResponse(request, template, {
            "title": f"{app.title} - {viewer}",
            "openapi_url": root + (app.openapi_url or "/openapi.json"),
            "vendor": root + VENDOR_URL,
            "static": root + STATIC_URL,
            "redoc_script": root + REDOC_URL,
        }, headers=page_headers(DOCS_CSP))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return page(request, "docs_swagger.html", "Swagger UI")

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc_script_file() -> Response:
        return Response(redoc_script, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return page(request, "docs_redoc.html", "ReDoc")
