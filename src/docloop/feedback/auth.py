"""Who calls the feedback API: authentication by mode, roles, API tokens and per-principal limits.

:class:`Authenticator` turns a request's headers into a :class:`Principal` (name + roles) or
raises :class:`AuthenticationFailed` (HTTP 401), by the modes of ``feedback.auth``:

* ``oidc``: ``Authorization: Bearer <JWT>`` verified with PyJWT against the issuer's JWKS
  (``oidc_jwks_url``, or the ``jwks_uri`` of the issuer's discovery document; https, or http on
  loopback): the header's ``alg`` must be in the allow-list (asymmetric only; ``none`` and
  ``HS*`` are refused by the config), the key is found by ``kid`` (an unknown ``kid`` refetches
  the JWKS, and re-reads the discovery document, at most once per ``oidc_jwks_refetch_s``), and
  ``iss``, ``aud``, ``exp`` and ``nbf`` are checked with ``oidc_leeway_s`` of skew. The
  principal is the ``principal_claim``; the ``roles_claim`` lists groups.
* ``proxy``: the ``proxy_header`` (``kubeflow-userid``) names the principal, believed only when
  the request also carries the proxy's shared secret (``proxy_secret_header``, compared in
  constant time; the secret from ``proxy_secret_file`` or ``proxy_secret_env``).
* ``token``: ``Authorization: Bearer dlt_...``, an API token from :func:`create_token`; only its
  SHA-256 is stored (the token carries 256 random bits, so a plain digest cannot be reversed).
* ``none``: nobody is authenticated; every caller is trusted (the API then serves loopback only).

Roles: ``auth.roles`` (principal -> roles) and ``auth.group_roles`` (group -> roles); a principal
that neither names gets ``default_roles``. An API token carries its own role.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jwt
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Double, case, cast, delete, extract, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from docloop.config import FeedbackAuthConfig
from docloop.errors import ConfigError, DocloopError
from docloop.feedback.contracts import normalised_name
from docloop.store.db import Store
from docloop.store.tables import ROLES, ApiToken, RateLimit, utcnow

TOKEN_PREFIX: Final = "dlt_"
ALL_ROLES: Final = frozenset(ROLES)
ANONYMOUS: Final = "anonymous"
JWKS_MAX_AGE_S: Final = 600.0
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
FETCH_TIMEOUT_S: Final = 5.0

logger = logging.getLogger(__name__)


class AuthenticationFailed(DocloopError):
    """The request does not prove who sends it (HTTP 401); the message says what to send."""


@dataclass(frozen=True)
class Principal:
    """Who sends a request.

    Attributes:
        name: the principal (``none`` mode: ``anonymous``).
        roles: what it may do (``reviewer``, ``auditor``, ``admin``, ``service``).
        via: how it was authenticated: ``oidc``, ``proxy``, ``token`` or ``none``.
    """

    name: str
    roles: frozenset[str]
    via: str

    @property
    def authenticated(self) -> bool:
        """Whether the name was proven (every mode but ``none``)."""
        return self.via != "none"

    def has_any(self, roles: Sequence[str]) -> bool:
        """Whether the principal holds one of ``roles``."""
        return bool(self.roles.intersection(roles))


def roles_of(auth: FeedbackAuthConfig, name: str, groups: Sequence[str] = ()) -> frozenset[str]:
    """The roles the config gives ``name`` (and its ``groups``), else ``default_roles``."""
    found = set(auth.roles.get(name, []))
    for group in groups:
        found.update(auth.group_roles.get(group, []))
    return frozenset(found or auth.default_roles)


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unusable_keys(why: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"authorization: the issuer's keys cannot be used now ({why}); retry"
    )


def fetchable_url(url: str, setting: str, *, allow_http: bool) -> str:
    """``url`` if the issuer's keys may be fetched from it: https, or http on loopback.

    Keys fetched in the clear can be swapped by anyone on the network path, and then every token
    they sign verifies. Plain http is accepted on a loopback host (tests, a sidecar) and, with
    ``allow_http``, everywhere (a service mesh that encrypts and authenticates the connection).

    Raises:
        ValueError: another scheme, no host, or http off loopback without ``allow_http``.
    """
    parts = urlsplit(url)
    if parts.hostname and (
        parts.scheme == "https"
        or (parts.scheme == "http" and (allow_http or _loopback_host(parts.hostname)))
    ):
        return url
    raise ValueError(
        f"{setting}: {url!r} is not an https URL; the issuer's keys fetched over plain http could "
        "be swapped by anyone on the network path. Use the issuer's https URL (http is accepted "
        "on loopback only, or with feedback.auth.oidc_allow_http: true where a service mesh "
        "encrypts the connection)"
    )


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fetch_json(url: str) -> dict[str, Any]:
    """A JSON object from ``url`` through PyJWT's fetcher (http(s) only, no redirects)."""
    try:
        fetched = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S).fetch_data()
    except (jwt.PyJWTError, ValueError) as exc:  # ValueError: the body is not JSON
        raise _IssuerUnavailable(f"cannot read {url} ({exc})") from exc
    return dict(fetched)


class _IssuerUnavailable(DocloopError):
    """The issuer's discovery document or keys cannot be read or are not acceptable."""


class _Jwks:
    """The issuer's signing keys by ``kid``, from ``oidc_jwks_url`` or the discovery document.

    Fetched on first use and again after ``JWKS_MAX_AGE_S`` (a key the issuer withdrew stops
    working); an unknown ``kid`` (a rotated key) refetches at once, but at most once per
    ``refetch_s``, so a flood of made-up kids cannot make the API hammer the issuer. Without
    ``oidc_jwks_url`` the JWKS URL is the ``jwks_uri`` of ``{issuer}/.well-known/
    openid-configuration`` (OpenID Connect Discovery 1.0 §4), read on first use and again with
    each unknown-kid refetch (a rotation may move the keys); the document must name exactly the
    configured issuer (§4.3) and an https ``jwks_uri`` (:func:`fetchable_url`).
    """

    def __init__(self, auth: FeedbackAuthConfig) -> None:
        assert auth.oidc_issuer is not None  # the config requires it in oidc mode
        self._issuer = auth.oidc_issuer
        self._allow_http = auth.oidc_allow_http
        self._discovered = auth.oidc_jwks_url is None
        self._url = auth.oidc_jwks_url
        self._refetch_s = auth.oidc_jwks_refetch_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = -math.inf
        self._refetched_at = -math.inf
        self._failure: str | None = None  # why the last fetch failed, until one succeeds
        self._lock = threading.Lock()

    @property
    def discovery_url(self) -> str:
        """Where the issuer's discovery document is (§4: no ``//`` before ``.well-known``)."""
        return self._issuer.rstrip("/") + DISCOVERY_PATH

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            stale = now - self._loaded_at >= JWKS_MAX_AGE_S
            unknown = kid not in self._keys and now - self._refetched_at >= self._refetch_s
            if stale or unknown:
                if not stale:
                    self._refetched_at = now
                self._loaded_at = now
                try:
                    if self._discovered and (self._url is None or unknown):
                        self._url = self._discover()
                    assert self._url is not None
                    jwk_set = jwt.PyJWKClient(
                        self._url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S
                    ).get_jwk_set(refresh=True)
                except (_IssuerUnavailable, jwt.PyJWTError, ValueError) as exc:
                    logger.warning("OIDC: the issuer's keys cannot be used: %s", exc)
                    self._failure = str(exc)
                    self._refetched_at = now  # a broken issuer is not asked again at once
                    raise _unusable_keys(self._failure) from exc
                self._keys = {k.key_id: k for k in jwk_set.keys if k.key_id}
                self._failure = None
            found = self._keys.get(kid)
            failure = self._failure
        if found is None and failure is not None:
            raise _unusable_keys(failure)
        if found is None:
            raise AuthenticationFailed(
                f"authorization: the token's signing key {kid!r} is not one of the issuer's keys"
            )
        return found

    def _discover(self) -> str:
        url = self.discovery_url
        document = _fetch_json(url)
        named = document.get("issuer")
        if named != self._issuer:
            raise _IssuerUnavailable(
                f"the discovery document {url} names the issuer {named!r}, not oidc_issuer "
                f"{self._issuer!r}; they must be equal character for character (OpenID Connect "
                "Discovery 1.0 §4.3): set feedback.auth.oidc_issuer to the issuer's own name"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise _IssuerUnavailable(f"the discovery document {url} names no jwks_uri")
        try:
            return fetchable_url(jwks_uri, f"jwks_uri of {url}", allow_http=self._allow_http)
        except ValueError as exc:
            raise _IssuerUnavailable(str(exc)) from exc


class Authenticator:
    """Turns request headers into a :class:`Principal` by the configured modes.

    Args:
        auth: the ``feedback.auth`` section.
        store: the state store (API tokens).
        environ: where ``proxy_secret_env`` is read (default ``os.environ``).

    Raises:
        ConfigError: proxy mode without a secret.
    """

    def __init__(
        self, auth: FeedbackAuthConfig, store: Store, environ: Mapping[str, str] | None = None
    ) -> None:
        self.auth = auth
        self.store = store
        self.modes = frozenset(auth.modes)
        self._jwks = _Jwks(_checked_oidc_urls(auth)) if "oidc" in self.modes else None
        self._proxy_secret = _proxy_secret(auth, os.environ if environ is None else environ)

    @property
    def required(self) -> bool:
        """Whether callers must authenticate (any mode but ``none``)."""
        return "none" not in self.modes

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal of a request (header names lower-case).

        Raises:
            AuthenticationFailed: no accepted credential, or one that does not verify.
        """
        if not self.required:
            return Principal(ANONYMOUS, ALL_ROLES, "none")
        token = _bearer(headers)
        if token is not None and token.startswith(TOKEN_PREFIX) and "token" in self.modes:
            return self._api_token(token)
        if token is not None and self._jwks is not None:
            return self._oidc(token)
        if "proxy" in self.modes and self.auth.proxy_header.lower() in headers:
            return self._proxy(headers)
        accepted = ", ".join(sorted(self.modes))
        raise AuthenticationFailed(
            f"authorization: no accepted credential (modes: {accepted}); send "
            "'Authorization: Bearer <token>' (an OIDC ID token or a docloop API token)"
        )

    def _oidc(self, token: str) -> Principal:
        assert self._jwks is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"authorization: not a JWT ({exc})") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.auth.oidc_algorithms:
            raise AuthenticationFailed(
                f"authorization: algorithm {alg!r} is not accepted "
                f"({', '.join(self.auth.oidc_algorithms)})"
            )
        if not isinstance(kid, str):
            raise AuthenticationFailed("authorization: the token names no signing key (kid)")
        key = self._jwks.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.auth.oidc_audience,
                issuer=self.auth.oidc_issuer,
                leeway=self.auth.oidc_leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"authorization: the token is not valid ({exc})") from exc
        name = claims.get(self.auth.principal_claim)
        if not isinstance(name, str) or not name:
            raise AuthenticationFailed(
                f"authorization: the token has no {self.auth.principal_claim!r} claim"
            )
        groups = claims.get(self.auth.roles_claim or "", [])
        groups = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []
        principal = _name(name)
        return Principal(principal, roles_of(self.auth, principal, groups), "oidc")

    def _proxy(self, headers: Mapping[str, str]) -> Principal:
        given = headers.get(self.auth.proxy_secret_header.lower(), "")
        if not hmac.compare_digest(given.encode(), self._proxy_secret.encode()):
            raise AuthenticationFailed(
                f"authorization: the {self.auth.proxy_header} header is believed only from the "
                "authenticating proxy, and this request does not carry its secret"
            )
        principal = _name(headers[self.auth.proxy_header.lower()])
        return Principal(principal, roles_of(self.auth, principal), "proxy")

    def _api_token(self, token: str) -> Principal:
        digest = token_digest(token)
        with self.store.read() as session:
            row = session.execute(
                select(ApiToken.token_sha256, ApiToken.principal, ApiToken.role)
                .where(ApiToken.token_sha256 == digest)
                .where(ApiToken.revoked_at.is_(None))
                .where((ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > utcnow()))
            ).one_or_none()
        if row is None or not hmac.compare_digest(row.token_sha256, digest):
            raise AuthenticationFailed(
                "authorization: unknown, expired or revoked API token; ask an admin for a new "
                "one (docloop tokens create)"
            )
        return Principal(row.principal, frozenset({row.role}), "token")


def _checked_oidc_urls(auth: FeedbackAuthConfig) -> FeedbackAuthConfig:
    """``auth``, if its JWKS URL (or, to be discovered, its issuer) is fetchable.

    Raises:
        ConfigError: the URL is not https (http off loopback without ``oidc_allow_http``).
    """
    setting, url = (
        ("feedback.auth.oidc_jwks_url", auth.oidc_jwks_url)
        if auth.oidc_jwks_url
        else ("feedback.auth.oidc_issuer", auth.oidc_issuer or "")
    )
    try:
        fetchable_url(url, setting, allow_http=auth.oidc_allow_http)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return auth


def _name(raw: str) -> str:
    try:
        return normalised_name(raw)
    except ValueError as exc:
        raise AuthenticationFailed(f"authorization: the principal's name {exc}") from exc


def _proxy_secret(auth: FeedbackAuthConfig, environ: Mapping[str, str]) -> str:
    if "proxy" not in auth.modes:
        return ""
    secret = ""
    if auth.proxy_secret_file:
        try:
            secret = Path(auth.proxy_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"feedback.auth.proxy_secret_file: cannot read {auth.proxy_secret_file} ({exc})"
            ) from exc
    secret = secret or environ.get(auth.proxy_secret_env, "").strip()
    if len(secret) < 16:
        raise ConfigError(
            "feedback.auth: proxy mode needs the proxy's shared secret (16+ characters) in "
            f"proxy_secret_file or ${auth.proxy_secret_env}; without it anyone could send the "
            f"{auth.proxy_header} header"
        )
    return secret


# --- API tokens -------------------------------------------------------------------------------
class TokenInfo(BaseModel):
    """An API token as listed (never the token itself)."""

    id: int
    principal: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def token_digest(token: str) -> str:
    """The stored form of an API token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    store: Store, principal: str, role: str, expires_at: datetime | None = None
) -> tuple[int, str]:
    """Make an API token for ``principal`` with ``role``; return its id and the token (once).

    Raises:
        ValueError: an unknown role or a name with control, format or bidi characters.
    """
    if role not in ALL_ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(sorted(ALL_ROLES))}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_sha256=token_digest(token),
        principal=normalised_name(principal),
        role=role,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    with store.write() as session:
        session.add(row)
        session.flush()
        return int(row.id), token


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every API token, oldest first (revoked ones included)."""
    with store.read() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        return [
            TokenInfo(
                id=r.id,
                principal=r.principal,
                role=r.role,
                created_at=r.created_at,
                expires_at=r.expires_at,
                revoked_at=r.revoked_at,
            )
            for r in rows
        ]


def revoke_token(store: Store, token_id: int) -> bool:
    """Revoke a token by id; False when no live token has that id."""
    with store.write() as session:
        done = session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return bool(getattr(done, "rowcount", 0))


# --- limits ---------------------------------------------------------------------------------
RATE_WINDOW_S: Final = 60.0
# Float slack when a batch fills the bucket exactly (epoch seconds carry ~1e-7 s of rounding).
RATE_SLACK_S: Final = 1e-3
CLEANUP_EVERY_S: Final = 60.0


def database_clock(dialect: str) -> ColumnElement[float]:
    """Now, in seconds since the epoch, by the database's clock (one clock for every replica)."""
    if dialect == "postgresql":
        return cast(extract("epoch", func.statement_timestamp()), Double())
    return (func.julianday("now") - 2440587.5) * 86400.0


class RateLimiter:
    """A token bucket per principal, kept in the state store so that every replica shares it.

    ``per_minute`` verdicts a minute, bursts up to that many. The bucket is GCRA's one number per
    principal (``rate_limits.refilled_at``, when the bucket is full again), moved by one
    conditional UPSERT: the database takes the row's lock, so two replicas taking at once are
    serialised and neither overdraws. Full buckets are deleted at most once per
    ``CLEANUP_EVERY_S`` per process, skipping rows another transaction holds.

    Args:
        store: the state store.
        per_minute: the rate (and the burst).
    """

    def __init__(self, store: Store, per_minute: int) -> None:
        self.store = store
        self.capacity = per_minute
        self.interval_s = RATE_WINDOW_S / per_minute
        self._cleaned_at = -math.inf
        self._lock = threading.Lock()

    def take(self, principal: str, count: int) -> int:
        """Take ``count`` verdicts; 0 when allowed, else the seconds to wait (nothing taken).

        Raises:
            ValueError: ``count`` is under 1 or over the whole rate (it could never be taken).
            StoreBusy: the principal's row stayed locked past the store's lock timeout.
            StoreError: the database failed.
        """
        if not 1 <= count <= self.capacity:
            raise ValueError(f"count {count} is not between 1 and the rate {self.capacity}")
        cost = count * self.interval_s
        with self.store.write() as session:
            now = database_clock(self.store.dialect)
            if self._cleanup_due():
                full = (
                    select(RateLimit.principal)
                    .where(RateLimit.refilled_at <= now)
                    .with_for_update(skip_locked=True)
                )
                session.execute(delete(RateLimit).where(RateLimit.principal.in_(full)))
            base = case((RateLimit.refilled_at > now, RateLimit.refilled_at), else_=now)
            insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
            taken = session.execute(
                insert(RateLimit)
                .values(principal=principal, refilled_at=now + cost)
                .on_conflict_do_update(
                    index_elements=[RateLimit.principal],
                    set_={"refilled_at": base + cost},
                    where=base + cost - now <= RATE_WINDOW_S + RATE_SLACK_S,
                )
                .returning(RateLimit.refilled_at)
            ).one_or_none()
            if taken is not None:
                return 0
            debt = session.scalar(
                select(RateLimit.refilled_at - now).where(RateLimit.principal == principal)
            )
        return max(1, math.ceil(float(debt or 0.0) + cost - RATE_WINDOW_S - RATE_SLACK_S))

    def _cleanup_due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._cleaned_at < CLEANUP_EVERY_S:
                return False
            self._cleaned_at = now
            return True
