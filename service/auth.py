"""Who may do what: bearer tokens for the API, signed links for a browser viewing one job.

A job is visible only to the token that submitted it (or through a link signed for it);
any other id, whether unknown, malformed or another token's, is the same 404, so ids
of other tokens' jobs cannot be probed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.context import Services, Svc
from service.errors import ApiError
from service.paths import is_job_id
from service.store import JobRecord, TokenRecord
from service.tokens import find_token

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
    """The caller's token; 401 when it is missing or unknown."""
    secret = _bearer(request)
    if secret is None:
        raise ApiError(401, "missing API token (Authorization: Bearer <token>)", _CHALLENGE)
    token = find_token(svc.store, secret)
    if token is None:
        raise ApiError(401, "invalid API token", _CHALLENGE)
    return token


Token = Annotated[TokenRecord, Depends(require_token)]


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


def readable_job(request: Request, job_id: str, svc: Services) -> JobRecord:
    """A job the request may read: by its owner's token, or by a link signed for it."""
    if not is_job_id(job_id):
        raise _no_such_job(job_id)
    if request.headers.get("authorization") is not None:
        return owned_job(job_id, require_token(request, svc), svc)
    exp, sig = request.query_params.get("exp"), request.query_params.get("sig")
    if exp is None or sig is None:
        raise ApiError(401, "missing API token or signed link (exp, sig)", _CHALLENGE)
    problem = svc.signer.check(job_id, exp, sig)
    if problem is not None:
        raise ApiError(401, problem, _CHALLENGE)
    job = svc.store.job(job_id)
    if job is None:
        raise _no_such_job(job_id)
    return job
