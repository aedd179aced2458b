"""Amazon SNS message signatures, verified as AWS documents them.

docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html:
SignatureVersion 1 is SHA1withRSA and 2 is SHA256withRSA (PKCS #1 v1.5), over
"Name\nvalue\n" for each of the message type's fields in their fixed order.
The certificate comes from the message's SigningCertURL, which must be https
on a `sns.<region>.amazonaws.com` host; it is fetched over verified TLS,
cached, and used only while valid. The same host rule guards the
SubscribeURL of a subscription confirmation.

`SignatureError`: not signed by SNS as it claims (refuse it).
`MalformedMessage`: not an SNS message at all.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

# The hosts AWS signs SNS messages from (and serves subscription links on).
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SNS_FIELDS["UnsubscribeConfirmation"] = _SNS_FIELDS["SubscriptionConfirmation"]


class SignatureError(Exception):
    """The message is not signed by Amazon SNS as it claims."""


class MalformedMessage(Exception):
    """Not an SNS message (an unknown Type, a field missing)."""


class Certificates:
    """Fetches SNS signing certificates (and subscription links) from allowed URLs.

    `allowed(url)`: https on an `sns.<region>.amazonaws.com` host by default;
    tests pass a predicate and a CA file for a local HTTPS server instead (no
    network). Certificates are cached by URL.
    """

    def __init__(
        self,
        allowed: Callable[[str], bool] | None = None,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.allowed = allowed or _aws_url
        self.ca_file = ca_file
        self.timeout = timeout
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def certificate(self, url: str) -> Any:
        """The X.509 certificate at `url`; SignatureError if the URL is not allowed or it
        is not a certificate valid now."""
        from cryptography import x509

        with self._lock:
            cert = self._cache.get(url)
        if cert is None:
            try:
                cert = x509.load_pem_x509_certificate(self.get(url))
            except ValueError:
                raise SignatureError(f"SigningCertURL {url} is not a PEM certificate") from None
            with self._lock:
                if len(self._cache) > 32:
                    self._cache.clear()
                self._cache[url] = cert
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SignatureError(f"the certificate at {url} is not valid now")
        return cert

    def get(self, url: str) -> bytes:
        """GET an allowed URL over verified TLS; SignatureError for any other URL or a failure."""
        import requests

        if not self.allowed(url):
            raise SignatureError(f"{url!r} is not an https URL of Amazon SNS")
        try:
            response = requests.get(url, timeout=self.timeout, verify=self.ca_file or True)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise SignatureError(f"cannot fetch {url}: {exc}") from None
        return response.content


def _aws_url(url: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and bool(SNS_HOST.match(parts.hostname or ""))
        and not (parts.username or parts.password or parts.port not in (None, 443))
    )


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: 'Name\\nvalue\\n' for each field of the type, in order
    (Subject only when present); MalformedMessage for an unknown Type."""
    names = _SNS_FIELDS.get(str(message.get("Type")))
    if names is None:
        raise MalformedMessage(f"unknown SNS message Type {message.get('Type')!r}")
    out = []
    for name in names:
        if name not in message:
            if name == "Subject":
                continue
            raise MalformedMessage(f"the SNS message has no {name}")
        out.append(f"{name}\n{message[name]}\n")
    return "".join(out).encode("utf-8")


def verify_sns(message: Mapping[str, Any], certificates: Certificates) -> None:
    """SignatureError unless the message is signed by the certificate at its SigningCertURL."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    version = str(message.get("SignatureVersion"))
    algorithm = {"1": hashes.SHA1, "2": hashes.SHA256}.get(version)
    if algorithm is None:
        raise SignatureError(f"unknown SignatureVersion {version!r}")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the Signature is not base64") from None
    data = sns_string_to_sign(message)
    key = certificates.certificate(str(message.get("SigningCertURL", ""))).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the signing certificate has no RSA key")
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SignatureError("bad SNS signature") from None
