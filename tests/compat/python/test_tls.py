"""TLS on the main port ([server.tls]) through the PyPI `pusher` SDK with ssl=True and a
websocket-client subscriber over wss://, trusting a CA made here with `cryptography`.

With ssl=True the SDK pins the CA bundle it ships (`verify=<its cacert.pem>`), so a
private CA needs a backend that sets `verify` itself (`TrustingBackend`)."""
import datetime
import ipaddress
import json
import os
import socket
import ssl
from pathlib import Path

import pusher
import pusher.requests
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import APP, CONFIG, RawWS, Server, uniq, wait_until


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertAuthority:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Herald compat CA"))
            .issuer_name(_name("Herald compat CA"))
            .public_key(self.key.public_key())
            .serial_number(1000)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        self.path = self.dir / "ca.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, serial):
        """Writes server.crt / server.key (renamed into place) for 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("herald"))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        for name, data in (("server.key", key_pem),
                           ("server.crt", cert.public_bytes(serialization.Encoding.PEM))):
            temporary = self.dir / (name + ".tmp")
            temporary.write_bytes(data)
            os.replace(temporary, self.dir / name)
        return self.dir / "server.crt", self.dir / "server.key"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = CertAuthority(tmp_path_factory.mktemp("tls"))
    cert, key = ca.issue(1)
    section = '[server.tls]\ncert = "%s"\nkey = "%s"\nwatch_interval = 1\n\n' % (cert, key)
    srv = Server(config=CONFIG.replace("[[apps]]", section + "[[apps]]", 1))
    yield ca, srv
    srv.stop()


def make_backend(ca_path):
    class TrustingBackend(pusher.requests.RequestsBackend):
        def __init__(self, client, **options):
            super().__init__(client, **options)
            self.options["verify"] = str(ca_path)

    return TrustingBackend


def tls_sdk(ca, srv):
    return pusher.Pusher(app_id=APP["id"], key=APP["key"], secret=APP["secret"],
                         host=srv.host, port=srv.port, ssl=True, timeout=5,
                         backend=make_backend(ca.path))


def presented_serial(ca, srv):
    context = ssl.create_default_context(cafile=str(ca.path))
    with socket.create_connection((srv.host, srv.port), timeout=3) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
            der = wrapped.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def wss(ca, srv):
    return RawWS(srv, scheme="wss", sslopt={"ca_certs": str(ca.path)})


def test_sdk_over_https_reaches_a_wss_subscriber(tls):
    ca, srv = tls
    channel = uniq("tls-")
    client = wss(ca, srv)
    try:
        client.subscribe(channel)
        sdk = tls_sdk(ca, srv)
        sdk.trigger(channel, "over-tls", {"secure": True})
        frame = client.event("over-tls", channel)
        assert json.loads(frame["data"]) == {"secure": True}
        assert sdk.channel_info(channel)["occupied"] is True
    finally:
        client.close()


def test_a_renewed_certificate_keeps_the_open_connection(tls):
    ca, srv = tls
    channel = uniq("renew-")
    client = wss(ca, srv)
    try:
        client.subscribe(channel)
        before = presented_serial(ca, srv)
        ca.issue(before + 1)
        wait_until(lambda: presented_serial(ca, srv) == before + 1, timeout=5,
                   what="the renewed certificate on new handshakes")
        tls_sdk(ca, srv).trigger(channel, "after-renewal", {"n": 2})
        assert json.loads(client.event("after-renewal", channel)["data"]) == {"n": 2}
        assert not client.closed
    finally:
        client.close()
