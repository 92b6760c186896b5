"""The console's *Users* page (SPEC §16: admins manage users): list the staff's accounts, add one
(name, role, initial password), change a role, disable or enable, reset a password.

Each form calls the use case ``notifier user`` calls (:mod:`notifier.services.users`); nothing is
decided here. The guard in :mod:`.app` lets only admins reach ``/console/users`` (anyone else: 403,
nothing changed) and has checked the CSRF token. Every change is recorded in the store with its
admin (``console:<name>``) and listed under the accounts; passwords are never shown, logged or put
in a URL.
"""

from __future__ import annotations

from aiohttp import web

from notifier.errors import InvalidRequest
from notifier.ports import Role
from notifier.runtime.console.app import PREFIX, USER, deps, render
from notifier.services import users as accounts

HISTORY = 50  # account changes listed under the accounts


async def _page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    store = deps(request).store
    return render(
        request,
        "users.html",
        status=status,
        error=error,
        users=await accounts.list_users(store),
        events=await accounts.account_history(store, limit=HISTORY),
        roles=[r.value for r in Role],
    )


async def users_page(request: web.Request) -> web.Response:
    return await _page(request)


def _field(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else ""


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidRequest(f"role: one of {', '.join(r.value for r in Role)}") from None


async def change(request: web.Request) -> web.StreamResponse:
    """One of the page's forms: ``add`` (``username``, ``role``, ``password``), or for the user in
    the path ``role`` (``role``), ``disable``, ``enable``, ``password`` (``password``)."""
    d = deps(request)
    form = await request.post()
    admin = request[USER].username
    actor = f"console:{admin}"
    now = d.session_clock.now()
    action = request.match_info.get("action", "add")
    username = request.match_info.get("username", "")
    try:
        if action == "add":
            name = _field(form, "username").strip().lower()
            role = _role(_field(form, "role"))
            await accounts.add_user(d.store, name, _field(form, "password"), role=role, now=now, actor=actor)
        elif action == "role":
            role = _role(_field(form, "role"))
            await accounts.set_role(d.store, username, role, now=now, actor=actor, acting=admin)
        elif action == "disable":
            await accounts.disable_user(d.store, username, now=now, actor=actor, acting=admin)
        elif action == "enable":
            await accounts.enable_user(d.store, username, now=now, actor=actor)
        else:
            password = _field(form, "password")
            await accounts.change_password(d.store, username, password, now=now, actor=actor)
    except InvalidRequest as error:
        return await _page(request, error=error.reason, status=400)
    raise web.HTTPSeeOther(f"{PREFIX}/users")


def register(app: web.Application) -> None:
    app.router.add_get("/users", users_page)
    app.router.add_post("/users", change)
    app.router.add_post(r"/users/{username}/{action:role|disable|enable|password}", change)
