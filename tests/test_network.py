# SPDX-License-Identifier: GPL-3.0-or-later
"""The Network preferences, end to end on loopback: the HTTPS proxy (a forwarding proxy of the
tests' own), the CA bundle (an HTTPS emulator with a certificate from a test CA made here) and
Blender's network timeout."""
from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import re
import time

import bpy
import pytest

from conftest import PKG
from emulator import Reply
from forwarding_proxy import ForwardingProxy
from test_providers import serve
from test_ui import RecordingLayout, render

PROXY_USER = "artist:proxy-pass-91c3"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
              "all_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def module(name: str):
    return importlib.import_module(f"{PKG}.{name}")


@pytest.fixture
def prefs(api, monkeypatch):
    """The add-on preferences, their Network fields and Blender's timeout restored after."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    prefs = module("addon.preferences").get()
    system = bpy.context.preferences.system
    timeout = system.network_timeout
    yield prefs
    prefs.https_proxy = ""
    prefs.ca_bundle = ""
    system.network_timeout = timeout


@pytest.fixture
def proxy():
    server = ForwardingProxy(credentials=PROXY_USER)
    yield server
    server.close()


def reconstruct(api, fixtures, emulator):
    serve(emulator, "segmind_sam3d", [fixtures.glb("blob")])
    try:
        return api.reconstruct(fixtures.path("photo.png"), provider="segmind_sam3d",
                               prompt="chair", timeout=60)
    except api.Recon3DError as exc:
        return exc


# -- the proxy -----------------------------------------------------------------------------------
def test_a_job_goes_through_the_proxy_of_the_preferences(api, prefs, proxy, emulator, fixtures,
                                                         monkeypatch):
    # Loopback is never proxied; the emulator is all there is offline, so this test alone
    # lifts the exemption. The environment's proxy points nowhere: the preference wins.
    monkeypatch.setattr(module("providers.network"), "LOOPBACK_NEVER_PROXIED", False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    prefs.https_proxy = proxy.url(PROXY_USER)
    objects = reconstruct(api, fixtures, emulator)
    assert isinstance(objects, list) and objects, objects
    urls = [f.url for f in proxy.forwarded]
    segmind = emulator.segmind_url
    assert f"{segmind}/v2/sam-3d-objects" in urls                       # the submit
    assert any(u.startswith(f"{segmind}/v2/requests/") for u in urls)   # polls and the result
    assert len(urls) == len(emulator.requests())     # every request the emulator saw came so
    expected = "Basic " + base64.b64encode(PROXY_USER.encode()).decode()
    assert {f.proxy_authorization for f in proxy.forwarded} == {expected}
    assert len(emulator.segmind.submits) == 1
    # The password, and the header made of it, are masked wherever Recon3D writes text.
    scrub = module("errors").scrub
    assert scrub(f"a proxy-pass-91c3 b {expected}") == "a [key hidden] b Basic [key hidden]"


def test_loopback_and_no_proxy_hosts_never_go_through_the_proxy(api, prefs, proxy, emulator,
                                                                fixtures, monkeypatch):
    prefs.https_proxy = proxy.url(PROXY_USER)
    objects = reconstruct(api, fixtures, emulator)           # loopback: direct, by default
    assert isinstance(objects, list) and objects, objects
    assert proxy.forwarded == [] and proxy.refused == []
    # With the loopback exemption lifted, NO_PROXY still names hosts reached directly.
    monkeypatch.setattr(module("providers.network"), "LOOPBACK_NEVER_PROXIED", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    objects = reconstruct(api, fixtures, emulator)
    assert isinstance(objects, list) and objects, objects
    assert proxy.forwarded == [] and len(emulator.segmind.submits) == 2


@pytest.mark.parametrize("case", ["closed port", "closed port, no password", "wrong password",
                                  "wrong password, https service"])
def test_a_proxy_that_cannot_carry_the_job_is_named(api, prefs, proxy, emulator, fixtures,
                                                    monkeypatch, request, test_ca, case):
    """Over https the proxy refuses the CONNECT tunnel (407): a tunnel never set up carried
    nothing, so the job is not "may have been billed", and a 407 is not asked again."""
    monkeypatch.setattr(module("providers.network"), "LOOPBACK_NEVER_PROXIED", False)
    monkeypatch.setattr(module("providers.retry").RetryPolicy, "delay", lambda *a: 0.01)
    service = emulator.segmind_url
    if "https" in case:
        service = request.getfixturevalue("tls_segmind")
        prefs.ca_bundle = str(test_ca / "ca.pem")
    port = proxy.port if "wrong password" in case else _closed_port()
    user = "" if "no password" in case else "artist:wrong-pass-5e7a@"
    prefs.https_proxy = f"http://{user}127.0.0.1:{port}"
    error = reconstruct(api, fixtures, emulator)
    assert isinstance(error, Exception), error
    message, job = str(error), api.jobs()[-1]
    assert f"could not reach the proxy http://127.0.0.1:{port} set in Preferences" in message
    assert "wrong-pass-5e7a" not in message and "wrong-pass-5e7a" not in repr(job)
    assert emulator.segmind.submits == [] and emulator.requests(server="tls") == []
    assert "billed" not in message and job.error_code == "unreachable", job.error
    if "wrong password" in case:                 # refused once (a tunnel: host:port), not retried
        asked = service.split("://", 1)[1] if "https" in case else f"{service}/v2/sam-3d-objects"
        assert proxy.refused == [asked] and proxy.forwarded == []


def test_a_reset_after_sending_through_the_proxy_is_not_taken_as_never_sent(
        api, prefs, proxy, emulator, fixtures, monkeypatch):
    """urllib3 1.26 (Blender 4.2) calls every socket error through a proxy a ProxyError: a
    submit the proxy passed on, whose answer was lost, may have been billed and is never
    sent again."""
    monkeypatch.setattr(module("providers.network"), "LOOPBACK_NEVER_PROXIED", False)
    monkeypatch.setattr(module("providers.retry").RetryPolicy, "delay", lambda *a: 0.01)
    prefs.https_proxy = proxy.url(PROXY_USER)
    proxy.drop_answers_to = "/v2/sam-3d-objects"
    error = reconstruct(api, fixtures, emulator)
    assert isinstance(error, Exception), error
    assert error.code == "ambiguous_submit" and "may still have been accepted and billed" in \
        str(error), error
    assert len(emulator.segmind.submits) == 1 and len(proxy.forwarded) == 1


@pytest.mark.parametrize("address", ["proxy.studio 3128", "http://[bad:3128",
                                     "http://jdoe:Pa#ss-word-77@127.0.0.1:3128"])
def test_a_proxy_that_is_not_an_address_is_refused_before_sending(api, prefs, emulator,
                                                                  fixtures, address):
    """Refused by api.submit with a Recon3DError (never a bare ValueError), named in the
    preferences page, whose drawing it does not break; never echoed."""
    prefs.https_proxy = address
    with pytest.raises(api.Recon3DError) as refused:
        api.submit(fixtures.path("photo.png"), provider="segmind_sam3d", prompt="chair")
    message = str(refused.value)
    assert "is not a proxy address" in message and "(# as %23" in message
    assert refused.value.code == "network_settings"
    assert address not in message and "bad:3128" not in message and "word-77" not in message
    assert emulator.requests() == []
    assert module("providers.network").shown_proxy(address) == "(not a proxy address)"
    lines: list = []
    module("panels").draw_preferences(prefs, RecordingLayout(lines, 0, bpy.context), bpy.context)
    page = " ".join(re.findall(r"text='([^']*)'", render(lines)))   # wrapped over labels
    assert "The HTTPS proxy set in Preferences › Add-ons › Recon3D › Network is not a proxy " \
           "address" in page and "word-77" not in page


def test_an_environment_proxy_that_cannot_be_read_is_named_and_its_password_kept(
        api, prefs, emulator, fixtures, test_ca, tls_segmind, monkeypatch, caplog):
    """HTTPS_PROXY with an unencoded # in its password: requests cannot read it (InvalidURL,
    an OSError). The artist is told which variable to fix and how; the password appears in
    no message, journal entry or log, and nothing blames the disk."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(module("providers.network"), "LOOPBACK_NEVER_PROXIED", False)
    prefs.ca_bundle = str(test_ca / "ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://jdoe:Pa#ss-word-77@127.0.0.1:9")
    error = reconstruct(api, fixtures, emulator)
    assert isinstance(error, Exception), error
    job = api.jobs()[-1]
    assert job.state == "failed" and job.error_code == "network_settings", job.error
    assert job.error.startswith("The proxy address in HTTPS_PROXY could not be read: write it "
                                "as http://host:port"), job.error
    assert "(# as %23" in job.error and "disk" not in job.error
    entry = os.path.join(module("addon.runtime").engine().job_dir(job), "job.json")
    deadline = time.monotonic() + 10          # journaled right after the job says it failed
    while "network_settings" not in (journal := open(entry, encoding="utf-8").read()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(journal)["error"] == job.error
    for text in (job.error, str(error), journal, caplog.text):
        assert "word-77" not in text and "jdoe:Pa" not in text
    assert emulator.requests(server="tls") == []


def test_a_network_error_that_escapes_is_not_blamed_on_the_disk(recon3d):
    import requests
    unexpected = module("jobs.lanes").unexpected_failure
    assert "Make room on the disk" in unexpected(OSError(28, "No space left on device"))
    said = unexpected(requests.exceptions.InvalidHeader("bad header"))
    assert said.startswith("Recon3D hit an unexpected problem (InvalidHeader: bad header).")
    assert "disk" not in said


def _closed_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the CA bundle -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    """A certificate authority made for this test and a server certificate for 127.0.0.1
    signed by it (the `cryptography` package of the test venv); nothing is written into the
    source tree."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, key, issuer, issuer_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    ca_name = name("Recon3D Test CA")
    ca = certificate(ca_name, ca_key, ca_name, ca_key, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                       decipher_only=False), True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)])
    server = certificate(name("127.0.0.1"), server_key, ca_name, ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                      x509.DNSName("localhost")]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)])
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder


@pytest.fixture(scope="module")
def tls_root(emulator, test_ca):
    """The emulator served over HTTPS on 127.0.0.1 with the test CA's certificate."""
    return emulator.serve_tls(str(test_ca / "server.pem"), str(test_ca / "server.key"))


@pytest.fixture
def tls_segmind(tls_root, monkeypatch):
    monkeypatch.setenv("RECON3D_SEGMIND_URL", f"{tls_root}/segmind")
    return tls_root


def test_an_untrusted_certificate_is_refused_and_the_ca_bundle_fixes_it(
        api, prefs, emulator, fixtures, test_ca, tls_segmind, monkeypatch):
    error = reconstruct(api, fixtures, emulator)
    assert isinstance(error, Exception), error
    assert str(error) == ("Segmind's certificate is not trusted by this machine; if your "
                          "studio uses its own certificate authority, set its CA bundle in "
                          "Preferences › Add-ons › Recon3D › Network.")
    assert emulator.requests(server="tls") == [] and emulator.segmind.submits == []
    # The preference wins over an environment bundle that does not hold the test CA.
    import certifi
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    prefs.ca_bundle = str(test_ca / "ca.pem")
    objects = reconstruct(api, fixtures, emulator)
    assert isinstance(objects, list) and objects, objects
    assert len(emulator.segmind.submits) == 1
    assert emulator.requests(server="tls", contains="/segmind/v2/sam-3d-objects")


def test_https_through_the_proxy_with_the_ca_bundle(api, prefs, proxy, emulator, fixtures,
                                                    test_ca, tls_segmind, monkeypatch):
    """An https:// service through the proxy: a CONNECT tunnel, the certificate checked
    against the preference's bundle inside it."""
    monkeypatch.setattr(module("providers.network"), "LOOPBACK_NEVER_PROXIED", False)
    prefs.https_proxy = proxy.url(PROXY_USER)
    prefs.ca_bundle = str(test_ca / "ca.pem")
    objects = reconstruct(api, fixtures, emulator)
    assert isinstance(objects, list) and objects, objects
    port = int(tls_segmind.rsplit(":", 1)[1])
    tunnels = [f for f in proxy.forwarded if f.method == "CONNECT"]
    assert tunnels and {f.url for f in tunnels} == {f"127.0.0.1:{port}"}
    assert emulator.requests(server="tls", contains="/segmind/v2/sam-3d-objects")
    assert len(emulator.segmind.submits) == 1


def test_the_environment_bundle_is_honoured_without_a_preference(
        api, prefs, emulator, fixtures, test_ca, tls_segmind, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca / "ca.pem"))
    objects = reconstruct(api, fixtures, emulator)
    assert isinstance(objects, list) and objects, objects


def test_a_missing_ca_bundle_is_refused_before_anything_is_sent(api, prefs, emulator, fixtures,
                                                                tmp_path):
    missing = tmp_path / "studio-ca.pem"
    prefs.ca_bundle = str(missing)
    with pytest.raises(api.Recon3DError) as refused:
        api.submit(fixtures.path("photo.png"), provider="segmind_sam3d", prompt="chair")
    assert str(refused.value).startswith(f"The CA bundle {missing} set in Preferences › "
                                         f"Add-ons › Recon3D › Network does not exist.")
    assert refused.value.code == "network_settings"
    assert emulator.requests() == []


# -- Blender's network timeout -------------------------------------------------------------------
@pytest.mark.parametrize("delay, passes", [(0.3, True), (1.6, False)])
def test_blenders_network_timeout_bounds_api_requests(api, prefs, emulator, delay, passes):
    bpy.context.preferences.system.network_timeout = 1
    runtime = module("addon.runtime")
    settings = runtime.resolve_settings("segmind_sam3d")
    assert settings.network.timeout == 1
    provider = module("providers").make_provider("segmind_sam3d", settings,
                                                 sleep=lambda seconds: None)
    emulator.fault("/v2/requests/job-1/status", Reply(200, {"status": "PROCESSING"},
                                                      delay=delay), times=10)
    if passes:
        assert provider.poll("job-1", {}).state == "running"
        return
    with pytest.raises(api.Recon3DError) as slow:
        provider.poll("job-1", {})
    assert slow.value.code == "timeout"
    assert str(slow.value) == ("Segmind did not answer within 1 s (Blender's "
                               "Preferences › System › Network › Time-out). Try again in a "
                               "few minutes.")
