"""Provider webhooks on a real server: SES through SNS, Mailgun, the generic endpoint.

`create_app` runs under uvicorn on localhost. SNS messages are signed here as
AWS signs them (the string to sign is built independently of the code under
test, from AWS's documentation), with an RSA certificate from a CA made by
trustme; the certificate and the subscription link are served by a local
HTTPS server, which the app is told to trust instead of sns.*.amazonaws.com
(no network).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
import real_parts
from bounce_samples import DATE, READERS, SECRET, make_world
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from helpers import serve_in_thread
from smtp_servers import free_port

from newsletter.bounces.sns import Certificates, _aws_url
from newsletter.bounces.webhooks import MailgunEndpoint, Refused
from newsletter.errors import NewsletterError
from newsletter.model import Edition, SubscriberState
from newsletter.store.bounces import EventKind

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"
GENERIC = "generic-webhook-secret-0123456789"


# --- a local HTTPS server for the SNS certificate and subscription links -----------------


@dataclass
class CertServer:
    base: str
    ca_file: str
    key: object  # the signing certificate's private key
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def cert_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sns")
    trustme = real_parts.import_real("trustme")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    signing = ca.issue_cert("sns.eu-west-1.amazonaws.com", key_type=trustme.KeyType.RSA)
    tls = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    pem = signing.cert_chain_pems[0].bytes()
    key = serialization.load_pem_private_key(signing.private_key_pem.bytes(), None)
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield CertServer(f"https://127.0.0.1:{server.server_port}/", str(folder / "ca.pem"), key, seen)
    server.shutdown()
    server.server_close()


def sns_sign(message: dict, key, version: str = "1") -> dict:
    """Sign as SNS does (AWS: "Verifying the signatures of Amazon SNS messages")."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return message | {
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


# --- the app -----------------------------------------------------------------------------------


@dataclass
class App:
    base: str
    world: object

    def post(self, path: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, {"text": text.decode(errors="replace")}

    def events(self):
        return self.world.store.bounces.list()

    def state(self, email):
        return self.world.store.subscribers.get(email).state


@pytest.fixture
def app(tmp_path, monkeypatch, cert_server):
    from newsletter.web.app import create_app

    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    monkeypatch.setenv("MAILGUN_KEY", MAILGUN_KEY)
    monkeypatch.setenv("GENERIC_SECRET", GENERIC)
    port = free_port()
    world = make_world(
        tmp_path,
        email={"bounce_limit": 1},
        server={"port": port, "public_url": f"http://127.0.0.1:{port}/"},
        bounces={
            "ses_topic_arns": [TOPIC],
            "mailgun_signing_key_env": "MAILGUN_KEY",
            "webhook_secret_env": "GENERIC_SECRET",
        },
    )
    certificates = Certificates(
        allowed=lambda url: url.startswith(cert_server.base), ca_file=cert_server.ca_file
    )
    try:
        with serve_in_thread(create_app(world.config, certificates=certificates), port):
            yield App(f"http://127.0.0.1:{port}/", world)
    finally:
        world.store.close()


def ses_notification(app, cert_server, kind, email, *, version="1", message_id="m-1", **extra):
    mail = {
        "timestamp": "2025-04-03T22:00:07.000Z",
        "source": app.world.verp(email),
        "messageId": "0102019600aabbcc-11223344",
        "destination": [email],
    }
    if kind == "Complaint":
        payload = {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": email}],
                "complaintFeedbackType": "abuse",
                "feedbackId": "fb-complaint-1",
                "timestamp": "2025-04-04T00:10:00.000Z",
            },
            "mail": mail,
        }
    else:
        payload = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": kind,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": email,
                        "action": "failed",
                        "status": "5.1.1" if kind == "Permanent" else "4.4.7",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                        if kind == "Permanent"
                        else "smtp; 421 4.4.7 try later",
                    }
                ],
                "feedbackId": f"fb-{kind}-1",
                "timestamp": "2025-04-03T22:00:09.000Z",
            },
            "mail": mail,
        }
    message = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(payload),
        "Timestamp": "2025-04-03T22:00:10.000Z",
        "SigningCertURL": cert_server.base + "SimpleNotificationService-test.pem",
        "UnsubscribeURL": cert_server.base + "unsubscribe",
    } | extra
    return sns_sign(message, cert_server.key, version)


# --- SES through SNS ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_permanent_bounce(app, cert_server, version):
    email = READERS[1]
    status, reply = app.post(
        "webhooks/ses", ses_notification(app, cert_server, "Permanent", email, version=version)
    )
    assert (status, reply["recorded"]) == (200, 1)
    [event] = app.events()
    assert (event.kind, event.email, event.source) == (EventKind.HARD, email, "ses")
    # The delivery, from the VERP address SES reports as the mail's source.
    assert (event.issue_date, event.edition, event.status) == (DATE, Edition.EN, "5.1.1")
    assert event.diagnostic == "550 5.1.1 user unknown"
    assert app.state(email) is SubscriberState.BOUNCED


def test_ses_transient_bounce_and_complaint(app, cert_server):
    soft = ses_notification(app, cert_server, "Transient", READERS[2], message_id="m-2")
    complaint = ses_notification(app, cert_server, "Complaint", READERS[3], message_id="m-3")
    assert app.post("webhooks/ses", soft)[0] == 200
    assert app.post("webhooks/ses", complaint)[0] == 200
    kinds = {(e.kind, e.email) for e in app.events()}
    assert kinds == {(EventKind.SOFT, READERS[2]), (EventKind.COMPLAINT, READERS[3])}
    assert app.state(READERS[2]) is SubscriberState.ACTIVE
    assert app.state(READERS[3]) is SubscriberState.COMPLAINED


def test_ses_retries_count_once(app, cert_server):
    message = ses_notification(app, cert_server, "Permanent", READERS[0])
    assert app.post("webhooks/ses", message)[1]["recorded"] == 1
    assert app.post("webhooks/ses", message)[1] == {
        "recorded": 0,
        "duplicates": 1,
        "note": "notification",
    }
    assert len(app.events()) == 1


def test_ses_tampered_or_foreign_messages_are_refused_and_logged(app, cert_server, caplog):
    good = ses_notification(app, cert_server, "Permanent", READERS[0])
    tampered = good | {"Message": good["Message"].replace(READERS[0], READERS[4])}
    other_topic = sns_sign(
        good | {"TopicArn": "arn:aws:sns:eu-west-1:999999999999:theirs"}, cert_server.key
    )
    foreign_cert = sns_sign(
        good | {"SigningCertURL": "https://example.org/cert.pem"}, cert_server.key
    )
    unsigned = {k: v for k, v in good.items() if k not in ("Signature", "SignatureVersion")}
    version_3 = good | {"SignatureVersion": "3"}
    with caplog.at_level(logging.WARNING, logger="newsletter.web"):
        for bad in (tampered, other_topic, foreign_cert, unsigned, version_3):
            assert app.post("webhooks/ses", bad) == (403, {"error": "forbidden"})
    assert app.events() == []
    assert app.state(READERS[0]) is SubscriberState.ACTIVE
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 5
    assert any("bad SNS signature" in line for line in refused)
    assert any("not in bounces.ses_topic_arns" in line for line in refused)


def test_ses_subscription_confirmation_fetches_the_subscribe_url(app, cert_server):
    cert_server.requests.clear()
    message = sns_sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "sub-1",
            "Token": "2336412f37fb687f5d51e6e2425f004aed",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": cert_server.base + "confirm?Action=ConfirmSubscription&Token=2336",
            "Timestamp": "2025-04-01T00:00:00.000Z",
            "SigningCertURL": cert_server.base + "SimpleNotificationService-test.pem",
        },
        cert_server.key,
        "2",
    )
    status, reply = app.post("webhooks/ses", message)
    assert status == 200 and "confirmed" in reply["note"]
    assert "/confirm?Action=ConfirmSubscription&Token=2336" in cert_server.requests
    # A confirmation whose link is not on SNS's hosts is never followed.
    cert_server.requests.clear()
    evil = sns_sign(message | {"SubscribeURL": "https://example.org/steal"}, cert_server.key, "2")
    assert app.post("webhooks/ses", evil)[0] == 403
    assert not any("steal" in path for path in cert_server.requests)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem", False),
        ("https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:8443/cert.pem", False),
        ("https://user@sns.eu-west-1.amazonaws.com/cert.pem", False),
        ("https://s3.eu-west-1.amazonaws.com/cert.pem", False),
    ],
)
def test_only_sns_hosts_may_sign(url, ok):
    assert _aws_url(url) is ok


# --- Mailgun ------------------------------------------------------------------------------------


def mailgun(app, event, email, *, timestamp=None, token=None, key=MAILGUN_KEY, **data):
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or hashlib.sha256(f"{email}{event}{timestamp}{data}".encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "id": f"id-{token[:10]}",
            "recipient": email,
            "envelope": {"sender": app.world.verp(email)},
            **data,
        },
    }


def test_mailgun_failed_and_complained(app):
    hard = mailgun(
        app,
        "failed",
        READERS[0],
        severity="permanent",
        **{"delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "No such user"}},
    )
    assert app.post("webhooks/mailgun", hard)[0] == 200
    assert app.post("webhooks/mailgun", mailgun(app, "complained", READERS[1]))[0] == 200
    assert app.post("webhooks/mailgun", mailgun(app, "delivered", READERS[2]))[0] == 200
    events = {(e.kind, e.email, e.status, e.issue_date) for e in app.events()}
    assert events == {
        (EventKind.HARD, READERS[0], "5.1.1", DATE),
        (EventKind.COMPLAINT, READERS[1], "", DATE),
    }
    assert app.state(READERS[0]) is SubscriberState.BOUNCED
    assert app.state(READERS[1]) is SubscriberState.COMPLAINED
    assert app.state(READERS[2]) is SubscriberState.ACTIVE


def test_mailgun_bad_stale_and_replayed_calls_are_refused(app):
    forged = mailgun(app, "complained", READERS[0], key="not-the-key-0123456789")
    stale = mailgun(app, "complained", READERS[0], timestamp=int(time.time()) - 3600)
    assert app.post("webhooks/mailgun", forged)[0] == 403
    assert app.post("webhooks/mailgun", stale)[0] == 403
    good = mailgun(app, "complained", READERS[0])
    assert app.post("webhooks/mailgun", good)[0] == 200
    assert app.post("webhooks/mailgun", good)[0] == 403  # the same token again
    assert len(app.events()) == 1


def test_mailgun_replay_window_units():
    now = [1_743_724_800.0]
    endpoint = MailgunEndpoint(MAILGUN_KEY, clock=lambda: now[0])

    def sign(timestamp, token):
        text = f"{timestamp}{token}".encode()
        return hmac.new(MAILGUN_KEY.encode(), text, hashlib.sha256).hexdigest()

    ts = str(int(now[0]) - 14 * 60)
    endpoint.verify(ts, "t1", sign(ts, "t1"))  # 14 minutes old: inside the window
    ts = str(int(now[0]) - 16 * 60)
    with pytest.raises(Refused, match="stale"):
        endpoint.verify(ts, "t2", sign(ts, "t2"))
    ts = str(int(now[0]) + 16 * 60)
    with pytest.raises(Refused, match="stale"):
        endpoint.verify(ts, "t3", sign(ts, "t3"))
    with pytest.raises(Refused, match="bad"):
        endpoint.verify(str(int(now[0])), "", sign(str(int(now[0])), ""))


# --- generic ------------------------------------------------------------------------------------


def test_generic_endpoint(app):
    auth = {"Authorization": f"Bearer {GENERIC}"}
    events = {
        "events": [
            {"type": "hard_bounce", "email": READERS[0], "id": "x1", "status": "5.1.1"},
            {"type": "unsubscribe", "email": READERS[1].upper(), "id": "x2"},
            {
                "type": "soft_bounce",
                "email": READERS[2],
                "id": "x3",
                "issue_date": "2025-04-04",
                "edition": "both",
            },
        ]
    }
    status, reply = app.post("webhooks/bounces", events, auth)
    assert (status, reply["recorded"]) == (200, 3)
    assert app.post("webhooks/bounces", events, auth)[1]["duplicates"] == 3
    assert app.state(READERS[0]) is SubscriberState.BOUNCED
    assert app.state(READERS[1]) is SubscriberState.UNSUBSCRIBED
    soft = next(e for e in app.events() if e.kind is EventKind.SOFT)
    assert (soft.issue_date, soft.edition, soft.source) == (DATE, Edition.BOTH, "webhook")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret"}, {"Authorization": f"Basic {GENERIC}"}],
)
def test_generic_endpoint_needs_the_secret(app, headers):
    body = {"type": "complaint", "email": READERS[0], "id": "y"}
    assert app.post("webhooks/bounces", body, headers) == (403, {"error": "forbidden"})
    assert app.events() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        ({"type": "bounce", "email": READERS[0]}, "type must be"),
        ({"type": "complaint"}, "needs a type and an email"),
        ({"type": "complaint", "email": READERS[0], "issue_date": "04/04/2025"}, "YYYY-MM-DD"),
    ],
)
def test_generic_endpoint_bad_bodies_are_400(app, body, message):
    status, reply = app.post("webhooks/bounces", body, {"Authorization": f"Bearer {GENERIC}"})
    assert status == 400 and message in reply["error"]


# --- configuration -------------------------------------------------------------------------------


def test_no_webhooks_unless_configured(tmp_path, monkeypatch):
    from starlette.routing import Route

    from newsletter.web.app import create_app

    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    world = make_world(tmp_path)
    app = create_app(world.config)
    paths = {r.path for r in app.routes if isinstance(r, Route)}
    assert not any(p.startswith("/webhooks") for p in paths)
    world.store.close()


def test_a_missing_or_weak_secret_stops_serve_at_once(tmp_path, monkeypatch):
    from newsletter.web.app import create_app

    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    world = make_world(tmp_path, bounces={"mailgun_signing_key_env": "NO_SUCH_VARIABLE"})
    with pytest.raises(NewsletterError, match=r"names \$NO_SUCH_VARIABLE, which is not set"):
        create_app(world.config)
    monkeypatch.setenv("SHORT", "abc")
    world2 = make_world(tmp_path / "two", bounces={"webhook_secret_env": "SHORT"})
    with pytest.raises(NewsletterError, match="too short"):
        create_app(world2.config)
    world.store.close()
    world2.store.close()
