"""Admin JSON API: Docker images that have a newer image in their registry."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from appliance.api.auth import VIEWER
from appliance.api.endpoints import API, Call, Shape, endpoint
from appliance.services import docker_images


class DockerImageQuery(Shape):
    limit: Annotated[int, Meta(ge=1, le=200)] = 50
    offset: Annotated[int, Meta(ge=0)] = 0


class DockerImages(Shape):
    """One page of image tags with a newer image, each with its first hosts."""

    images: list[docker_images.ImageGroup]
    total: int
    limit: int
    offset: int


@endpoint(
    "GET",
    f"{API}/docker/images",
    area="Updates",
    summary="List Docker images with a newer image",
    requires=VIEWER,
    query=DockerImageQuery,
    answer=DockerImages,
)
async def docker_images_list(call: Call) -> DockerImages:
    """Image tags whose registry has a newer image, and the hosts that run them."""
    query: DockerImageQuery = call.query
    groups, total = await docker_images.image_page(call.db, limit=query.limit, offset=query.offset)
    return DockerImages(images=groups, total=total, limit=query.limit, offset=query.offset)
