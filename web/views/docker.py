"""Pages: Docker images with a newer image in their registry, the hosts and containers
that run them, and approving or pulling one image everywhere it runs."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from appliance.services import docker_images, updates
from web.auth import PageError, actor_of, field_text, form_with_csrf, require_page
from web.templating import counted, render
from web.views.updates import can_act, count_param, form_key, page_number, read_form_key

PER_PAGE = 20
NOTICES = {
    "approved": "Approved on {hosts}.",
    "pulling": "Pull requested: {commands} for the agents' next check-in; follow them on "
    "the Live page.",
}
NOTHING = {
    "approved": "Nothing was approved: the image's updates are already approved or underway.",
    "pulling": "Nothing was pulled: the image's updates are already underway.",
    "nothing_waiting": "No host has an update of that image waiting any more.",
}


def _notice(request: Request) -> tuple[str, bool]:
    key = request.query_params.get("notice", "")
    n = count_param(request.query_params, "n")
    if key in NOTICES and n:
        return NOTICES[key].format(hosts=counted(n, "host"), commands=counted(n, "command")), False
    return NOTHING.get(key, ""), key in NOTHING


async def docker_page(request: Request) -> Response:
    await require_page(request, "viewer")
    page = page_number(request.query_params)
    groups, total = await docker_images.image_page(
        request.state.appliance.db, limit=PER_PAGE, offset=(page - 1) * PER_PAGE
    )
    notice, notice_bad = _notice(request)
    return render(
        request,
        "docker.html",
        {
            "groups": groups,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PER_PAGE)),
            "can_act": can_act(request),
            "form_key": form_key(),
            "notice": notice,
            "notice_bad": notice_bad,
        },
    )


async def image_action(request: Request) -> Response:
    """POST /docker/images: approve, or approve and pull now, one image tag on every
    host whose update of it needs work."""
    web_session = await require_page(request, "operator")
    form = await form_with_csrf(request, web_session)
    action = field_text(form, "action", 20)
    image = field_text(form, "image", 512)
    if action not in docker_images.ACTIONS or not image:
        raise PageError(400, "Choose Approve or Pull now next to an image.")
    key = read_form_key(form)
    page = page_number(request.query_params)
    back = f"/docker?{urlencode({'page': page})}&" if page > 1 else "/docker?"
    try:
        outcome = await docker_images.act_on_image(
            request.state.appliance.db,
            actor_of(request, web_session),
            image,
            action,
            form_key=key,
        )
    except docker_images.NoImageUpdates:
        return RedirectResponse(f"{back}notice=nothing_waiting", status_code=303)
    if isinstance(outcome, updates.InstallRequest):
        n = len(outcome.commands)
        return RedirectResponse(f"{back}{urlencode({'notice': 'pulling', 'n': n})}", 303)
    n = len(outcome.settled)
    return RedirectResponse(f"{back}{urlencode({'notice': 'approved', 'n': n})}", 303)


routes: list[BaseRoute] = [
    Route("/docker", docker_page, methods=["GET"]),
    Route("/docker/images", image_action, methods=["POST"]),
]
