"""A stock OAuth2 client and a stock JWT library against Spaceport.

Usage: oauth_client.py BASE_URL CLIENT_ID CLIENT_SECRET SCOPE ISSUER AUDIENCE

1. authlib's OAuth2Session completes the client-credentials grant at
   BASE_URL/v1/auth/token (HTTP Basic client authentication, RFC 6749 form).
2. PyJWT verifies the access token with the keys from BASE_URL/.well-known/jwks.json.
Prints the verified claims as JSON; exits non-zero on any failure.
"""

import json
import sys

import jwt
from authlib.integrations.requests_client import OAuth2Session


def main() -> int:
    base, client_id, client_secret, scope, issuer, audience = sys.argv[1:7]
    session = OAuth2Session(
        client_id,
        client_secret,
        scope=scope,
        token_endpoint_auth_method="client_secret_basic",
    )
    token = session.fetch_token(f"{base}/v1/auth/token", grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer", token
    assert token["expires_in"] == 3600, token

    jwks = jwt.PyJWKClient(f"{base}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(token["access_token"])
    claims = jwt.decode(
        token["access_token"],
        key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt", header
    # A tampered token must not verify.
    head, payload, signature = token["access_token"].split(".")
    forged = ".".join([head, payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1], signature])
    try:
        jwt.decode(forged, key, algorithms=["EdDSA"], audience=audience, issuer=issuer)
    except jwt.PyJWTError:
        pass
    else:
        raise AssertionError("a tampered token verified")
    print(json.dumps({"claims": claims, "scope": token.get("scope")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
