"""Docker image references and the registry side: which digest a tag points at now.

`HEAD /v2/<name>/manifests/<tag>` with the manifest media types, following the
registry's Bearer (or Basic) challenge with credentials from the host's docker config
(agent/scanners/docker_config.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from agent.http_client import AnswerTooLarge, HTTPClient, HTTPFailure, Response
from agent.scanners.docker_config import DOCKER_HUB, RegistryCredentials
from kernel.protocol import ProtocolError, check_package_name

# Index and list first: their digest is what `docker pull <tag>` records in RepoDigests.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# The grammar of github.com/distribution/reference, plus `check_package_name` on top.
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
# \Z, not $: "$" also matches before a trailing newline.
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}(?:\.{_DOMAIN})*(?::[0-9]+)?\Z")
_PATH_PART_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,}\Z")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')

# Evaluated at run time, so not `A | B`, which Python 3.9 cannot evaluate.
RegistryUrls = Optional[Union[Mapping[str, str], Callable[[str], str]]]


class InvalidImageReference(ProtocolError):
    """An image name that is not a plain `repository[:tag]`; refused before anything runs."""


class RegistryError(RuntimeError):
    """One registry lookup failed: unreachable, 5xx, refused credentials, unknown tag."""


class RegistryUnavailable(RegistryError):
    """Every registry lookup of a scan failed; raised so the scanner's breaker counts it."""


# --- image references ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageReference:
    domain: str  # "docker.io", "ghcr.io", "registry.example:5000"
    path: str  # "library/nginx", "owner/app"
    tag: str = "latest"
    digest: str = ""  # set when the reference pins a digest (`name@sha256:...`)

    @property
    def repository(self) -> str:
        """The familiar name `docker` shows: "nginx", "owner/app", "ghcr.io/owner/app"."""
        if self.domain != DOCKER_HUB:
            return f"{self.domain}/{self.path}"
        return self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def canonical(self) -> str:
        return f"{self.domain}/{self.path}:{self.tag}"


def parse_image_reference(text: object, *, allow_digest: bool = False) -> ImageReference:
    """`nginx:1.27` -> docker.io, library/nginx, 1.27. Raises InvalidImageReference for
    anything else than a well-formed reference (and for digests unless allowed)."""
    shown = repr(str(text)[:80])
    if not isinstance(text, str) or not text or len(text) > 512:
        raise InvalidImageReference(f"image {shown} is not a valid image reference")
    name, _, digest = text.partition("@")
    if digest and (not allow_digest or not _DIGEST_RE.match(digest)):
        raise InvalidImageReference(f"image {shown} is pinned by digest, not a tag")
    tag = "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name[: -len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if (
        not _DOMAIN_RE.match(domain)
        or not all(_PATH_PART_RE.match(part) for part in path.split("/"))
        or not _TAG_RE.match(tag)
    ):
        raise InvalidImageReference(f"image {shown} is not a valid image reference")
    reference = ImageReference(domain, path, tag, digest)
    try:
        check_package_name("docker", reference.repository)
    except ProtocolError as exc:
        raise InvalidImageReference(str(exc)) from None
    return reference


def repository_of(repo_digest: str) -> tuple[str, str] | None:
    """("docker.io/library/nginx", "sha256:...") from a RepoDigests entry."""
    try:
        reference = parse_image_reference(repo_digest, allow_digest=True)
    except InvalidImageReference:
        return None
    return f"{reference.domain}/{reference.path}", reference.digest


# --- registry --------------------------------------------------------------------------


def default_registry_url(domain: str) -> str:
    return "https://registry-1.docker.io" if domain == DOCKER_HUB else f"https://{domain}"


class RegistryClient:
    """Reads the current manifest digest of a tag, the way `docker pull` resolves it."""

    def __init__(
        self,
        credentials: RegistryCredentials,
        registry_urls: RegistryUrls = None,
        *,
        timeout_s: float = 15.0,
        transport: Any = None,
    ):
        self.credentials = credentials
        self._urls = registry_urls
        self._http = HTTPClient(timeout=timeout_s, transport=transport, follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def base_url(self, domain: str) -> str:
        if callable(self._urls):
            return self._urls(domain).rstrip("/")
        if self._urls is not None and domain in self._urls:
            return self._urls[domain].rstrip("/")
        return default_registry_url(domain)

    def manifest_digest(self, reference: ImageReference) -> str:
        base = self.base_url(reference.domain)
        url = f"{base}/v2/{reference.path}/manifests/{reference.tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._request("HEAD", url, headers, reference)
        if response.status == 401:
            headers["Authorization"] = self._authorization(reference, base, response)
            response = self._request("HEAD", url, headers, reference)
        digest = response.headers.get("Docker-Content-Digest", "")
        if response.status == 200 and not digest:
            # A few registries omit the header on HEAD; the digest is the body's hash.
            response = self._request("GET", url, headers, reference)
            digest = "sha256:" + hashlib.sha256(response.body).hexdigest()
        if response.status != 200:
            raise RegistryError(_status_problem(reference, response.status))
        if not _DIGEST_RE.match(digest):
            raise RegistryError(f"{reference.image}: registry sent an invalid digest")
        return digest

    def _request(
        self, method: str, url: str, headers: dict[str, str], reference: ImageReference
    ) -> Response:
        try:
            return self._http.request(method, url, headers=headers, max_body=MAX_MANIFEST_BYTES)
        except AnswerTooLarge:
            raise RegistryError(f"{reference.image}: manifest larger than 4 MiB") from None
        except HTTPFailure as exc:
            raise RegistryError(
                f"{reference.image}: cannot reach {reference.domain}: {type(exc).__name__} {exc}"
            ) from None

    def _authorization(self, reference: ImageReference, base: str, challenged: Response) -> str:
        scheme, params = _parse_challenge(challenged.headers.get("WWW-Authenticate", ""))
        credentials = self.credentials.for_registry(reference.domain)
        if scheme == "basic" and credentials:
            return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        if scheme != "bearer" or not params.get("realm"):
            needs = "credentials in the docker config" if scheme == "basic" else "a known scheme"
            raise RegistryError(f"{reference.image}: {reference.domain} asks for {needs}")
        realm = params["realm"]
        realm_scheme = urlsplit(realm).scheme
        if realm_scheme not in ("http", "https"):
            raise RegistryError(f"{reference.image}: token realm is not an http(s) URL")
        if credentials and realm_scheme == "http" and urlsplit(base).scheme == "https":
            raise RegistryError(
                f"{reference.image}: refusing to send credentials to a plain-http token realm"
            )
        query = {"scope": params.get("scope") or f"repository:{reference.path}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            answer = self._http.request("GET", realm, params=query, auth=credentials or None)
        except HTTPFailure as exc:
            raise RegistryError(
                f"{reference.image}: cannot reach token service: {type(exc).__name__} {exc}"
            ) from None
        if answer.status != 200:
            given = "refused the credentials" if credentials else "wants credentials"
            reason = given if answer.status in (401, 403) else f"HTTP {answer.status}"
            raise RegistryError(f"{reference.image}: token service {reason}")
        try:
            body = json.loads(answer.body)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{reference.image}: token service sent no token")
        return f"Bearer {token}"


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _status_problem(reference: ImageReference, status: int) -> str:
    if status in (401, 403):
        return f"{reference.image}: {reference.domain} refused access (HTTP {status})"
    if status == 404:
        return f"{reference.image}: tag not found in {reference.domain}"
    return f"{reference.image}: {reference.domain} answered HTTP {status}"
