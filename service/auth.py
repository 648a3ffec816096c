"""Who may do what: bearer tokens for the API, signed links for a browser viewing one job.

A job is visible only to the token that submitted it (or through a link signed for it);
any other id, whether unknown, malformed or another token's, is the same 404, so ids
of other tokens' jobs cannot be probed. Tokens are looked up in the store on every
request, so a revoked or expired token (and every link it signed) stops working at once.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gigasynth_service.context import Services, Svc
from gigasynth_service.errors import ApiError
from gigasynth_service.links import LINK, TILES
from gigasynth_service.paths import is_job_id
from gigasynth_service.store import JobRecord, TokenRecord
from gigasynth_service.tokens import find_token, token_problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gigasynth"'}


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "Authorization header must be 'Bearer <token>'", _CHALLENGE)
    return secret.strip()


def require_token(request: Request, svc: Svc) -> TokenRecord:
    """The caller's token; 401 when it is missing, unknown, revoked or expired."""
    secret = _bearer(request)
    if secret is None:
        raise ApiError(401, "missing API token (Authorization: Bearer <token>)", _CHALLENGE)
    token = find_token(svc.store, secret)
    if token is None:
        raise ApiError(401, "invalid API token", _CHALLENGE)
    problem = token_problem(token)
    if problem is not None:
        raise ApiError(401, f"API token {problem}", _CHALLENGE)
    return token


Token = Annotated[TokenRecord, Depends(require_token)]


def require_operator(request: Request, svc: Svc) -> None:
    """The operator's token (GIGASYNTH_METRICS_TOKEN): what covers every token's jobs is
    the operator's alone. 401 without a bearer token or with another, 404 while none
    is set."""
    secret = _bearer(request)
    if secret is None:
        raise ApiError(401, "missing operator token (GIGASYNTH_METRICS_TOKEN)", _CHALLENGE)
    expected = svc.config.metrics_token
    if expected is None:
        raise ApiError(404, "metrics are off on this server (GIGASYNTH_METRICS_TOKEN is unset)")
    if not hmac.compare_digest(secret.encode(), expected.encode()):
        raise ApiError(401, "missing or wrong operator token (GIGASYNTH_METRICS_TOKEN)", _CHALLENGE)


Operator = Annotated[None, Depends(require_operator)]


def _no_such_job(job_id: str) -> ApiError:
    shown = job_id if is_job_id(job_id) else "(malformed id)"
    return ApiError(404, f"no such job: {shown}")


def owned_job(job_id: str, token: TokenRecord, svc: Services) -> JobRecord:
    """The token's job `job_id`, or 404."""
    if not is_job_id(job_id):
        raise _no_such_job(job_id)
    job = svc.store.job(job_id)
    if job is None or job.token_id != token.id:
        raise _no_such_job(job_id)
    return job


@dataclass(frozen=True)
class ReadAccess:
    """A job a request may read, and how: `link` is the signed link's query it came with
    (None: its owner's bearer token). Only a token mints links; a link is handed back as is."""

    job: JobRecord
    link: str | None
    link_exp: int | None = None  # the link's absolute expiry (Unix seconds)

    def signed_query(self, svc: Services) -> str:
        """A link for the response: the request's own, or (for a token) a newly signed one."""
        return self.link or svc.signer.query(self.job.id, self.job.token_id)


def read_access(request: Request, job_id: str, svc: Services, *, tiles: bool = False) -> ReadAccess:
    """Who may read `job_id`: its owner's token, or a link its owner's token signed and
    that token is still valid (not revoked, not expired); else 401 or 404. With `tiles`
    (the DeepZoom descriptor and tiles) a tile signature serves as well as a link."""
    if not is_job_id(job_id):
        raise _no_such_job(job_id)
    if request.headers.get("authorization") is not None:
        return ReadAccess(owned_job(job_id, require_token(request, svc), svc), None)
    exp, sig = request.query_params.get("exp"), request.query_params.get("sig")
    if exp is None or sig is None:
        raise ApiError(401, "missing API token or signed link (exp, sig)", _CHALLENGE)
    job = svc.store.job(job_id)
    problem = svc.signer.check(
        job_id, job.token_id if job else "", exp, sig, (LINK, TILES) if tiles else (LINK,)
    )
    if problem is not None:
        raise ApiError(401, problem, _CHALLENGE)
    if job is None:
        raise _no_such_job(job_id)
    token_state = token_problem(svc.store.token_by_id(job.token_id))
    if token_state is not None:
        raise ApiError(401, f"signed link's token {token_state}", _CHALLENGE)
    return ReadAccess(job, f"exp={exp}&sig={sig}", int(exp))


def readable_job(request: Request, job_id: str, svc: Services, *, tiles: bool = False) -> JobRecord:
    """A job the request may read: by its owner's token, or by a link signed for it (or
    with `tiles`, a tile signature)."""
    return read_access(request, job_id, svc, tiles=tiles).job
