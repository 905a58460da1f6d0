"""What every console page shares: how a page is answered, the session it needs, the form it
posted, and where the signed-out and the refused go."""

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.response import Redirect, Template

import tether
from tether._version import __version__
from tether.server.console.session import Session, check_csrf, session_of

OPEN = {"exclude_from_auth": True}
PAGE = 50
"""Rows a console list shows at a time."""


PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""Every page: never inside another site's frame (a consent page or a form clicked through
a disguise), and no URL of the console (its query) sent to other sites as a referrer."""


def render(template: str, session: Session | None, status: int = 200, **context: Any) -> Template:
    return Template(
        template_name=template,
        context={"session": session, "version": __version__, **context},
        media_type="text/html",
        status_code=status,
        headers=PAGE_HEADERS,
    )


class SignedOut(Exception):
    """The page needs a session the request does not have: it goes to the sign-in form."""


async def signed_in(request: Request[Any, Any, Any]) -> Session:
    """The request's session (kept on the request for an error page's layout)."""
    session = await session_of(request)
    if session is None:
        raise SignedOut
    request.state.console_session = session
    return session


async def posted(request: Request[Any, Any, Any]) -> tuple[Session, Any]:
    """The session and the form it posted, once the form's CSRF token checks out (what the
    session's pages keep is dropped: the form may change it)."""
    session = await session_of(request)
    form = await check_csrf(request, session)
    if session is None:
        raise SignedOut
    request.app.state.tether.console_choices.drop(session.csrf)
    request.state.console_session = session
    return session, form


def to_sign_in(request: Request[Any, Any, Any], _exc: SignedOut) -> Response[Any]:
    """To the sign-in form, and (for a page, not a form) back to that page afterwards."""
    if request.method != "GET":
        return Redirect("/sign-in", status_code=303)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect("/sign-in?" + urlencode({"next": here}), status_code=303)


def refused(request: Request[Any, Any, Any], exc: tether.APIError) -> Response[Any]:
    """What the API refused, said on a page of the console (with the API's reason)."""
    session = getattr(request.state, "console_session", None)
    return render("refused.html", session, exc.status, message=exc.message)
