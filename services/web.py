"""The API's browser pages: the reference docs (`services.docs`) and the clinician's alert inbox
(`services.inbox`), their templates, static files and headers.

Every page works with no request leaving the API's origin: scripts, styles and the favicon are served from
installed packages and this package, and each page's Content-Security-Policy forbids the browser to load
anything from elsewhere. A clinic's network is often closed, and a page that fetches from a CDN both breaks
there and tells third parties who is reading a health API.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
# Swagger UI 5 and ReDoc 2 as shipped in the `fastapi-offline` wheel (MIT; Swagger UI is Apache-2.0, ReDoc MIT).
VENDOR_DIR = Path(str(files("fastapi_offline") / "static"))
VENDOR_URL = "/static/vendor"
STATIC_URL = "/static"


def page_headers(content_security_policy: str) -> dict[str, str]:
    """Headers for an HTML page: its CSP, no MIME sniffing, no referrer sent on, never framed."""
    return {
        "Content-Security-Policy": content_security_policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def add_web_pages(app: FastAPI) -> None:
    """Mount the static files and the pages on `app` (create the app with docs_url=None and redoc_url=None)."""
    from aromatrack.services.docs import add_docs
    from aromatrack.services.inbox import add_inbox

    # The vendor mount first: the broader /static mount would otherwise take its paths.
    app.mount(VENDOR_URL, StaticFiles(directory=VENDOR_DIR), name="vendor")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    templates = Jinja2Templates(directory=TEMPLATE_DIR)
    add_docs(app, templates)
    add_inbox(app, templates)
