"""An OIDC issuer for tests: RSA keys made at test time, its JWKS served over HTTP on 127.0.0.1.

Tokens are signed with PyJWT by the issuer's current key; ``rotate()`` adds a new key (new
``kid``) to the served set, as an issuer does before signing with it. The server also answers
OpenID Connect Discovery 1.0 for the issuer ``local_issuer`` (``{local_issuer}/.well-known/
openid-configuration``, §4), naming ``discovered_issuer`` and the JWKS at ``jwks_path``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://dex.test/dex"
AUDIENCE = "docloop-feedback"


class Issuer:
    """Signing keys by ``kid``; ``published`` are those the JWKS endpoint serves."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.discoveries = 0
        self.url = ""
        self.origin = ""
        self.jwks_path = "/keys"
        self.discovered_issuer: str | None = None  # None: the served issuer names itself
        self.discovered_jwks_uri: str | None = None  # None: the served JWKS
        self.rotate()

    @property
    def local_issuer(self) -> str:
        """The issuer identifier of the served discovery document."""
        return f"{self.origin}/dex"

    def discovery(self) -> dict[str, Any]:
        """The discovery document (the fields OpenID Connect Discovery 1.0 §3 requires)."""
        issuer = self.discovered_issuer or self.local_issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/auth",
            "jwks_uri": self.discovered_jwks_uri or f"{self.origin}{self.jwks_path}",
            "response_types_supported": ["code", "id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def rotate(self, *, publish: bool = True) -> str:
        """A new key (the one tokens are signed with from now on); returns its kid."""
        kid = f"key-{len(self.keys) + 1}"
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)
        self.current = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, subject: str, *, kid: str | None = None, **claims: Any) -> str:
        """A signed ID token for ``subject`` (``email``); ``claims`` override the defaults."""
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"sub-{subject}",
            "email": subject,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        use = kid or self.current
        return jwt.encode(body, self.keys[use], algorithm="RS256", headers={"kid": use})


@contextmanager
def serve_issuer() -> Iterator[Issuer]:
    """An :class:`Issuer` whose JWKS is served at ``issuer.url`` until the block ends."""
    issuer = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/dex/.well-known/openid-configuration":
                issuer.discoveries += 1
                document = issuer.discovery()
            elif self.path == issuer.jwks_path:
                issuer.fetches += 1
                document = issuer.jwks()
            else:
                self.send_error(404)
                return
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.origin = f"http://127.0.0.1:{server.server_address[1]}"
    issuer.url = f"{issuer.origin}/keys"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
