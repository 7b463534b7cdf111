"""The clinician's alert inbox in the browser (/inbox): server-rendered pages and plain HTML forms, no script.

Sign-in exchanges the clinician's API token, checked by `auth.authenticate` exactly as the API checks it, for
a session cookie: random, stored only as a hash, HttpOnly, SameSite=Strict, Secure unless the page is served
on loopback, and ending after SESSION_HOURS, at sign-out, or as soon as its token is revoked, expires or its
user's role changes (every request asks `auth.authenticate_hash` who the session's token stands for). Every
POST form carries a CSRF token: the session's, or before sign-in a random one double-submitted in a cookie.
Only clinicians get an inbox; which alerts a clinician sees and may acknowledge is decided by the API's own checks, and
acknowledging is the API route's code (`api.acknowledge`). Logs name user and alert ids, never alert content
or notes. The pages send `Cache-Control: no-store`, so a shared clinic computer keeps no copy of them.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Path, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from aromatrack.services import chart
from aromatrack.services.api import MAX_NOTE_CHARS, Services, acknowledge, alert_for, services
from aromatrack.services.auth import Access, Principal, Role, allowed, authenticate, authenticate_hash
from aromatrack.services.store import InboxAlert, WebSession
from aromatrack.services.web import STATIC_URL, page_headers

log = logging.getLogger("aromatrack.inbox")

SESSION_HOURS = 8  # one clinic shift
SESSION_COOKIE = "aromatrack_inbox"
SIGN_IN_COOKIE = "aromatrack_sign_in"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
INBOX_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# Most severe first; within a severity, newest first.
SEVERITY_RANK = {"urgent": 0, "warning": 1, "info": 2}

View = Literal["open", "history"]


class PageError(HTTPException):
    """An inbox request refused: shown as a page that says why, never what the refused alert holds."""


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""


@dataclass(frozen=True)
class SignedIn:
    """A request from a live session: who (as its token says now), the session, and its cookie value."""

    principal: Principal
    session: WebSession
    cookie: str


@dataclass(frozen=True)
class Filters:
    view: View = "open"
    athlete: str | None = None
    rule: str | None = None


def triage_order(items: Iterable[InboxAlert]) -> list[InboxAlert]:
    """Open alerts: most severe first, newest first within a severity."""
    return sorted(items, key=lambda i: (SEVERITY_RANK[i.alert.severity], -i.alert.time.timestamp(), i.alert.alert_id))


def history_order(items: Iterable[InboxAlert]) -> list[InboxAlert]:
    """Closed alerts (acknowledged or withdrawn): the latest closed first."""
    return sorted(items, key=lambda i: (-(i.acknowledged_at or i.withdrawn_at or 0.0), i.alert.alert_id))


def select(items: Iterable[InboxAlert], filters: Filters) -> list[InboxAlert]:
    """The alerts of the view that match the athlete and rule filters, in the view's order."""
    chosen = [
        item for item in items
        if item.open == (filters.view == "open")
        and filters.athlete in (None, item.alert.athlete_id)
        and filters.rule in (None, item.alert.rule)
    ]
    return triage_order(chosen) if filters.view == "open" else history_order(chosen)


def _utc(moment: datetime | float | None) -> str:
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | str | None) -> str:
    if value is None:
        return "—"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _secure(request: Request) -> bool:
    """Cookies are Secure (HTTPS only) everywhere but on loopback, where a local demo serves plain HTTP."""
    return request.url.hostname not in LOOPBACK_HOSTS


@contextmanager
def refusals_as_pages() -> Iterator[None]:
    """The API's refusals as inbox pages. An unknown alert and another care team's look alike (403)."""
    try:
        yield
    except HTTPException as exc:
        raise PageError(exc.status_code, "None of your patients has an alert with this id.") from None


def _same(submitted: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(submitted.encode(), expected.encode())


def add_inbox(app: FastAPI, templates: Jinja2Templates) -> None:
    templates.env.filters["utc"] = _utc
    templates.env.filters["number"] = _number

    def render(request: Request, template: str, context: dict, status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(
            request, template, {"static": STATIC_URL, **context}, status_code=status_code,
            headers={**page_headers(INBOX_CSP), "Cache-Control": "no-store"},
        )

    def sign_in_page(request: Request, problem: str | None = None, status_code: int = 200) -> HTMLResponse:
        csrf = secrets.token_urlsafe(32)
        response = render(request, "inbox_sign_in.html",
                          {"csrf": csrf, "problem": problem, "session_hours": SESSION_HOURS}, status_code)
        response.set_cookie(SIGN_IN_COOKIE, csrf, max_age=3600, path="/inbox", httponly=True,
                            secure=_secure(request), samesite="strict")
        return response

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        return render(request, "inbox_error.html", {"status": exc.status_code, "message": exc.detail},
                      exc.status_code)

    @app.exception_handler(SignInRequired)
    async def _sign_in_required(request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse("/inbox/sign-in", status_code=303, headers={"Cache-Control": "no-store"})

    def signed_in_clinician(request: Request, deps: Services = Depends(services)) -> SignedIn:
        """A plain function, as `api.principal`: FastAPI runs it on its thread pool, off the event loop."""
        cookie = request.cookies.get(SESSION_COOKIE)
        session = deps.store.session(cookie) if cookie else None
        who = authenticate_hash(deps.store, session.token_hash) if session else None
        if who is None or who.role is not Role.CLINICIAN:
            raise SignInRequired
        request.state.principal = who  # for the API's access log
        return SignedIn(who, session, cookie)

    def check_csrf(signed_in: SignedIn, submitted: str) -> None:
        if not _same(submitted, signed_in.session.csrf_token):
            raise PageError(403, "This form has expired. Go back, reload the page and try again.")

    @app.get("/inbox/sign-in", include_in_schema=False)
    async def sign_in_form(request: Request) -> HTMLResponse:
        return sign_in_page(request)

    @app.post("/inbox/sign-in", include_in_schema=False)
    async def sign_in(
        request: Request,
        token: str = Form(..., max_length=200),
        csrf: str = Form(..., max_length=100),
        deps: Services = Depends(services),
    ) -> Response:
        if not _same(csrf, request.cookies.get(SIGN_IN_COOKIE)):
            return sign_in_page(request, "The sign-in form had expired; please try again.", 403)
        who = await deps.async_store.run(authenticate, token.strip())
        if who is None:
            log.info("inbox sign-in refused: unknown token")
            return sign_in_page(request, "That token is not valid. Copy it again, or ask for a new one.", 401)
        if who.role is not Role.CLINICIAN:
            log.info("inbox sign-in refused for %s %s", who.role.value, who.user_id)
            return sign_in_page(request, f"The inbox is for clinicians; a {who.role.value} uses the API.", 403)
        cookie, _ = await deps.async_store.open_session(token.strip(), SESSION_HOURS * 3600)
        log.info("inbox sign-in by %s", who.user_id)
        response = RedirectResponse("/inbox", status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_HOURS * 3600, path="/inbox", httponly=True,
                            secure=_secure(request), samesite="strict")
        response.delete_cookie(SIGN_IN_COOKIE, path="/inbox")
        return response

    @app.post("/inbox/sign-out", include_in_schema=False)
    async def sign_out(
        request: Request,
        csrf: str = Form(..., max_length=100),
        signed_in: SignedIn = Depends(signed_in_clinician),
        deps: Services = Depends(services),
    ) -> RedirectResponse:
        check_csrf(signed_in, csrf)
        await deps.async_store.close_session(signed_in.cookie)
        log.info("inbox sign-out by %s", signed_in.principal.user_id)
        response = RedirectResponse("/inbox/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/inbox", httponly=True, secure=_secure(request),
                               samesite="strict")
        return response

    @app.get("/inbox", include_in_schema=False)
    async def inbox(
        request: Request,
        view: View = "open",
        athlete: str | None = Query(None, max_length=100),
        rule: str | None = Query(None, max_length=100),
        acknowledged: str | None = Query(None, max_length=128),
        signed_in: SignedIn = Depends(signed_in_clinician),
        deps: Services = Depends(services),
    ) -> HTMLResponse:
        who = signed_in.principal
        athletes = [a for a in await deps.async_store.athletes_of(who.user_id)
                    if allowed(who, Access.ALERTS, a, is_care_team=True)]
        filters = Filters(view, athlete or None, rule or None)
        everything = [item for a in athletes if filters.athlete in (None, a)
                      for item in await deps.async_store.alerts_for(a)]
        return render(request, "inbox_list.html", {
            "who": who, "csrf": signed_in.session.csrf_token, "filters": filters, "athletes": athletes,
            "rules": sorted({item.alert.rule for item in everything}),
            "items": select(everything, filters),
            "open_count": sum(item.open for item in everything),
            "acknowledged": acknowledged,
        })

    @app.get("/inbox/alerts/{alert_id}", include_in_schema=False)
    async def alert_page(
        request: Request,
        alert_id: str = Path(..., max_length=128),
        signed_in: SignedIn = Depends(signed_in_clinician),
        deps: Services = Depends(services),
    ) -> HTMLResponse:
        with refusals_as_pages():
            item = await alert_for(deps, signed_in.principal, alert_id, Access.ALERTS)
        return render(request, "inbox_alert.html", {
            "who": signed_in.principal, "csrf": signed_in.session.csrf_token, "item": item, "alert": item.alert,
            "max_note": MAX_NOTE_CHARS,
        })

    @app.get("/inbox/alerts/{alert_id}/chart.png", include_in_schema=False)
    async def alert_chart(
        alert_id: str = Path(..., max_length=128),
        signed_in: SignedIn = Depends(signed_in_clinician),
        deps: Services = Depends(services),
    ) -> Response:
        with refusals_as_pages():
            item = await alert_for(deps, signed_in.principal, alert_id, Access.ALERTS)
        png = await chart.alert_png(deps.influx, item.alert)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    @app.post("/inbox/alerts/{alert_id}/acknowledge", include_in_schema=False)
    async def acknowledge_form(
        alert_id: str = Path(..., max_length=128),
        csrf: str = Form(..., max_length=100),
        note: str = Form("", max_length=MAX_NOTE_CHARS),
        signed_in: SignedIn = Depends(signed_in_clinician),
        deps: Services = Depends(services),
    ) -> RedirectResponse:
        check_csrf(signed_in, csrf)
        with refusals_as_pages():
            await acknowledge(deps, signed_in.principal, alert_id, note)
        return RedirectResponse(f"/inbox?acknowledged={quote(alert_id, safe='')}", status_code=303)
