"""Digest authentication against the RFCs' vectors and a real baresip REGISTER."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_agent.sip import digest
from edge_agent.sip.digest import (
    Challenge,
    Credentials,
    authorization,
    parse_challenge,
    parse_credentials,
    verify,
)
from edge_agent.sip.errors import DigestError
from edge_agent.sip.message import parse

CORPUS = Path(__file__).parent / "corpus"

# RFC 2617 3.5 (and RFC 2069 2.4 for the variant without qop).
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
# RFC 7616 3.9.1: the same request with MD5 and with SHA-256 (password with a lower-case "of").
RFC7616 = {
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


def rfc7616_challenge(algorithm: str) -> Challenge:
    return parse_challenge(
        f'Digest realm="{RFC7616["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616["nonce"]}", opaque="{RFC7616["opaque"]}"'
    )


def response_of(header: str) -> str:
    return parse_credentials(header).response


# ---------------------------------------------------------------- known vectors


def test_it_matches_the_rfc_2617_example() -> None:
    header = authorization(
        parse_challenge(RFC2617_CHALLENGE),
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert header == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001'
    )


def test_it_matches_the_rfc_2069_example_without_qop() -> None:
    challenge = Challenge("testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093")
    header = authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="CircleOfLife"
    )
    assert response_of(header) == "1949323746fe6a43ef61f9606e7febea"
    assert "qop=" not in header and "cnonce=" not in header and "nc=" not in header


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_it_matches_the_rfc_7616_examples(algorithm: str, expected: str) -> None:
    header = authorization(
        rfc7616_challenge(algorithm),
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616["cnonce"],
    )
    credentials = parse_credentials(header)
    assert credentials.response == expected
    assert (credentials.algorithm, credentials.qop, credentials.nc) == (
        algorithm,
        "auth",
        "00000001",
    )
    assert credentials.opaque == RFC7616["opaque"]


def test_it_verifies_what_baresip_sent() -> None:
    """baresip 1.0.0 answered our 401 (MD5, qop=auth) for alice/secret: captured on loopback."""
    register = parse((CORPUS / "baresip_register_auth.sip").read_bytes())
    header = register.headers.get("Authorization") or ""
    assert verify(header, method="REGISTER", password="secret", realm="rundruf.test")
    assert not verify(header, method="REGISTER", password="Secret", realm="rundruf.test")
    assert not verify(header, method="INVITE", password="secret", realm="rundruf.test")
    assert not verify(header, method="REGISTER", password="secret", realm="other.test")


# ---------------------------------------------------------------- algorithms and qop


def sha(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


def test_sha_512_256_follows_the_rfc_7616_formula() -> None:
    if "sha512_256" not in hashlib.algorithms_available:
        pytest.skip("this Python's OpenSSL has no SHA-512/256")
    header = authorization(
        Challenge("r", "n", "SHA-512-256", ("auth",)),
        method="INVITE",
        uri="sip:201@pbx",
        username="u",
        password="p",
        cnonce="c",
        nc=2,
    )
    ha1, ha2 = sha("sha512_256", "u:r:p"), sha("sha512_256", "INVITE:sip:201@pbx")
    assert response_of(header) == sha("sha512_256", f"{ha1}:n:00000002:c:auth:{ha2}")
    assert verify(header, method="INVITE", password="p", realm="r")


def test_sha_512_256_missing_from_openssl_is_a_digest_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_new = hashlib.new

    def without_sha512_256(name: str, *args: bytes) -> object:
        if name == "sha512_256":
            raise ValueError("unsupported hash type")
        return real_new(name, *args)

    monkeypatch.setattr(digest.hashlib, "new", without_sha512_256)
    with pytest.raises(DigestError) as caught:
        authorization(
            Challenge("r", "n", "SHA-512-256"), method="X", uri="sip:a", username="u", password="p"
        )
    assert str(caught.value) == "digest algorithm SHA-512-256 is not available here"


@pytest.mark.parametrize("algorithm", ["MD5-sess", "SHA-256-sess"])
def test_sess_algorithms_hash_the_nonces_into_ha1(algorithm: str) -> None:
    name = "md5" if algorithm.startswith("MD5") else "sha256"
    header = authorization(
        Challenge("r", "n", algorithm, ("auth",)),
        method="REGISTER",
        uri="sip:pbx",
        username="u",
        password="p",
        cnonce="c",
    )
    ha1 = sha(name, f"{sha(name, 'u:r:p')}:n:c")
    expected = sha(name, f"{ha1}:n:00000001:c:auth:{sha(name, 'REGISTER:sip:pbx')}")
    assert response_of(header) == expected
    assert verify(header, method="REGISTER", password="p", realm="r")


def test_auth_int_is_used_when_offered_alone_and_covers_the_body() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    header = authorization(
        Challenge("r", "n", "SHA-256", ("auth-int",)),
        method="INVITE",
        uri="sip:201@pbx",
        username="u",
        password="p",
        cnonce="c",
        body=body,
    )
    assert parse_credentials(header).qop == "auth-int"
    ha2 = sha("sha256", f"INVITE:sip:201@pbx:{hashlib.sha256(body).hexdigest()}")
    assert response_of(header) == sha(
        "sha256", f"{sha('sha256', 'u:r:p')}:n:00000001:c:auth-int:{ha2}"
    )
    assert verify(header, method="INVITE", password="p", realm="r", body=body)
    assert not verify(header, method="INVITE", password="p", realm="r", body=b"other")


def test_it_prefers_auth_when_both_are_offered() -> None:
    header = authorization(
        Challenge("r", "n", qop=("auth-int", "auth")),
        method="BYE",
        uri="sip:a",
        username="u",
        password="p",
    )
    credentials = parse_credentials(header)
    assert credentials.qop == "auth" and credentials.cnonce and len(credentials.cnonce) == 16


@pytest.mark.parametrize(
    ("challenge", "error"),
    [
        (Challenge("r", "n", "SHA-1"), "unsupported digest algorithm 'SHA-1'"),
        (Challenge("r", "n", "AKAv1-MD5"), "unsupported digest algorithm 'AKAv1-MD5'"),
        (Challenge("r", "n", qop=("auth-conf",)), "unsupported qop 'auth-conf'"),
    ],
)
def test_it_refuses_what_it_cannot_answer(challenge: Challenge, error: str) -> None:
    with pytest.raises(DigestError) as caught:
        authorization(challenge, method="REGISTER", uri="sip:a", username="u", password="p")
    assert str(caught.value) == error


# ---------------------------------------------------------------- parsing


def test_it_reads_asterisks_compact_challenge() -> None:
    response = parse((CORPUS / "asterisk_401_register.sip").read_bytes())
    challenge = parse_challenge(response.headers.get("WWW-Authenticate") or "")
    assert challenge == Challenge(
        realm="asterisk",
        nonce="1732693200/6d0a1f3c9b2e8d4a7c5f0e1b3d2a9c8f",
        algorithm="MD5",  # sent as "md5"
        qop=("auth",),
        opaque="4b7e2f1a6c9d3e08",
    )


def test_it_reads_both_challenges_of_a_407() -> None:
    response = parse((CORPUS / "pbx_407_two_algorithms.sip").read_bytes())
    challenges = [parse_challenge(v) for v in response.headers.get_all("Proxy-Authenticate")]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert {c.nonce for c in challenges} == {"ZTg1YjQ5MjctOWQ3Mi00"}


def test_it_reads_parameters_in_any_order_and_case() -> None:
    challenge = parse_challenge(
        'DIGEST STALE=true,Algorithm=sha-256-SESS ,NONCE="a,b=c",REALM="say \\"hi\\""'
        ', qop=auth, domain="sip:pbx"'
    )
    assert challenge == Challenge('say "hi"', "a,b=c", "SHA-256-sess", ("auth",), None, True)
    assert parse_challenge(str(challenge)) == challenge


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('Basic realm="pbx"', "not a Digest challenge: 'Basic realm=\"pbx\"'"),
        ('Digest nonce="n"', "challenge without realm"),
        ('Digest realm="r"', "challenge without nonce"),
        ('Digest realm="r", nonce="n", realm="s"', "realm twice in challenge"),
        ('Digest realm="r", nonce="unterminated', "bad challenge at 'nonce=\"unterminated'"),
        ("Digest realm", "bad challenge at 'realm'"),
    ],
)
def test_it_rejects_bad_challenges(value: str, error: str) -> None:
    with pytest.raises(DigestError) as caught:
        parse_challenge(value)
    assert str(caught.value) == error


def test_it_reads_credentials() -> None:
    register = parse((CORPUS / "baresip_register_auth.sip").read_bytes())
    assert parse_credentials(register.headers.get("Authorization") or "") == Credentials(
        username="alice",
        realm="rundruf.test",
        nonce="5f2c1e0b9a7d4c3e",
        uri="sip:127.0.0.1:5082",
        response="950051c8a8d7ed392908bf2746a99acc",
        algorithm="MD5",
        qop="auth",
        cnonce="62258352d8ce390b",
        nc="00000001",
        opaque="opaque-1",
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('Digest username="u", realm="r", nonce="n", uri="sip:a"', "credentials without response"),
        (
            'Digest username="u", realm="r", nonce="n", uri="sip:a", response="x", qop=auth',
            "credentials with qop but without cnonce or nc",
        ),
        ("Bearer abc", "not a Digest credentials: 'Bearer abc'"),
    ],
)
def test_it_rejects_bad_credentials(value: str, error: str) -> None:
    with pytest.raises(DigestError) as caught:
        verify(value, method="REGISTER", password="p", realm="r")
    assert str(caught.value) == error


def test_its_own_answers_verify_for_every_algorithm() -> None:
    for algorithm in digest.ALGORITHMS:
        if algorithm.startswith("SHA-512") and "sha512_256" not in hashlib.algorithms_available:
            continue
        for qop in ((), ("auth",), ("auth-int",)):
            challenge = Challenge("rundruf.test", "n0nce", algorithm, qop, "op")
            header = authorization(
                challenge,
                method="INVITE",
                uri="sip:201@pbx",
                username="Jürgen",
                password="pässwort",
            )
            assert verify(header, method="INVITE", password="pässwort", realm="rundruf.test")
            assert not verify(header, method="INVITE", password="passwort", realm="rundruf.test")
