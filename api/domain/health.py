"""What an agent says it runs on and how its SIP registration stands (plain Python).

The report comes from a customer's machine: every value is checked against a closed
set or a shape and a length, and anything else is refused with BadInput naming the
field (the report then changes nothing). The error codes are the agent's
(`edge_agent/sip/registration.py`); `describe_sip_error` puts them into words for
the watchdog's mails, `frontend_stub/js/texts/` does the same for the website.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from api.domain import validation
from api.errors import BadInput
from api.models.enums import DialerKind, Language, PbxAdapter, SipRegistrationState

_NAME = re.compile(r"^[a-z][A-Za-z0-9]{0,31}$")  # codes and parameter names
# The codes the agent sends today; another (from a newer agent) is stored and told as is.
CODES = (
    "refused",
    "credentialsRefused",
    "notGranted",
    "timeout",
    "challengeUnsupported",
    "network",
    "unresolvable",
    "localAddress",
    "connectFailed",
    "tlsCertificate",
    "tlsClientCertificate",
    "tlsHandshake",
    "tlsConfig",
    "connectionLost",
    "internal",
)
PARAMS_MAX = 8
PARAM_TEXT_MAX = 100
DETAIL_MAX = 200
_INT_LIMIT = 2**31


@dataclass(frozen=True)
class SipErrorIn:
    code: str
    at: datetime
    params: object = None
    detail: str | None = None


@dataclass(frozen=True)
class SipRegistrationIn:
    state: str
    since: datetime
    last_error: SipErrorIn | None = None


@dataclass(frozen=True)
class SipError:
    code: str
    at: datetime
    params: dict[str, str | int] = field(default_factory=dict)
    detail: str | None = None


@dataclass(frozen=True)
class SipRegistration:
    state: SipRegistrationState
    since: datetime
    last_error: SipError | None = None


E = TypeVar("E", PbxAdapter, DialerKind, SipRegistrationState)


def _choice(kind: type[E], value: str | None, name: str) -> E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise BadInput(f"one of {choices}", field=name) from None


def pbx_adapter(value: str | None) -> PbxAdapter | None:
    return _choice(PbxAdapter, value, "pbxAdapter")


def dialer(value: str | None) -> DialerKind | None:
    return _choice(DialerKind, value, "dialer")


def _params(value: object, name: str) -> dict[str, str | int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > PARAMS_MAX:
        raise BadInput(f"an object of at most {PARAMS_MAX} entries", field=name)
    params: dict[str, str | int] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise BadInput("names are letters and digits, at most 32", field=name)
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise BadInput("values are texts or whole numbers", field=name)
        if isinstance(item, int) and not -_INT_LIMIT < item < _INT_LIMIT:
            raise BadInput("a number out of range", field=name)
        if isinstance(item, str):
            item = validation.printable(item, name, PARAM_TEXT_MAX)
        params[key] = item
    return params


def sip_error(value: SipErrorIn, prefix: str, now: datetime) -> SipError:
    if not _NAME.match(value.code):
        raise BadInput("a code of letters and digits, at most 32", field=f"{prefix}.code")
    detail = value.detail and validation.printable(value.detail, f"{prefix}.detail", DETAIL_MAX)
    return SipError(
        code=value.code,
        at=validation.moment(value.at, f"{prefix}.at", now),
        params=_params(value.params, f"{prefix}.params"),
        detail=detail or None,
    )


def sip_registration(
    value: SipRegistrationIn | None, dialer_kind: DialerKind | None, now: datetime
) -> SipRegistration | None:
    """The registration, checked; only a SIP dialer has one. `now`: the server's clock,
    which bounds the times reported (validation.moment)."""
    if value is None:
        return None
    if dialer_kind is not DialerKind.SIP:
        raise BadInput("only the SIP dialer registers", field="sipRegistration")
    state = _choice(SipRegistrationState, value.state, "sipRegistration.state")
    assert state is not None
    error = value.last_error
    return SipRegistration(
        state=state,
        since=validation.moment(value.since, "sipRegistration.since", now),
        last_error=sip_error(error, "sipRegistration.lastError", now) if error else None,
    )


# --- words ------------------------------------------------------------------------

_ERRORS = {
    Language.DE: {
        "refused": "Die Telefonanlage lehnt die Anmeldung ab ({status} {reason}).",
        "credentialsRefused": "Die Telefonanlage nimmt SIP-Benutzer oder -Passwort nicht an "
        "({status}).",
        "notGranted": "Die Telefonanlage nimmt die Anmeldung an, aber für 0 Sekunden "
        "(erbeten: {requested} s); der Dienst gilt damit als nicht angemeldet.",
        "timeout": "Die Telefonanlage antwortet nicht (keine Antwort in {seconds} s).",
        "challengeUnsupported": "Die Telefonanlage verlangt ein Anmeldeverfahren, das der "
        "Rundruf Manager Service nicht beherrscht.",
        "network": "Die Anmeldung kann nicht gesendet werden (Netzwerkfehler).",
        "unresolvable": "Der Name der Telefonanlage „{host}“ lässt sich nicht auflösen.",
        "localAddress": "Die eigene SIP-Adresse des Rundruf Manager Service ist falsch "
        "eingestellt („{address}“ ist keine Adresse, unter der die Telefonanlage ihn "
        "erreicht; RUNDRUF_AGENT_SIP_LOCAL_HOST).",
        "connectFailed": "Die Telefonanlage nimmt unter {host}:{port} keine Verbindung an "
        "({reason}).",
        "tlsCertificate": "Das TLS-Zertifikat der Telefonanlage „{host}“ wird nicht "
        "anerkannt ({reason}); unverschlüsselt wird nichts gesendet. Es muss auf diesen Namen "
        "lauten und von einer vertrauten Stelle stammen (RUNDRUF_AGENT_SIP_TLS_CA_FILE).",
        "tlsClientCertificate": "Die Telefonanlage „{host}“ verlangt ein Client-Zertifikat "
        "des Rundruf Manager Service oder lehnt seines ab ({reason}; "
        "RUNDRUF_AGENT_SIP_TLS_CERT_FILE).",
        "tlsHandshake": "Die TLS-Verbindung zur Telefonanlage „{host}“ kommt nicht zustande "
        "({reason}).",
        "tlsConfig": "Eine TLS-Datei des Rundruf Manager Service ist nicht verwendbar "
        "({setting}: „{file}“).",
        "connectionLost": "Die TLS-Verbindung zur Telefonanlage {host}:{port} brach ab "
        "({reason}); der Rundruf Manager Service verbindet sich neu.",
        "internal": "Ein interner Fehler des Rundruf Manager Service (Einzelheiten in "
        "seinem Protokoll).",
        "other": "Fehler „{code}“.",
        "detail": "Technische Meldung: {detail}",
    },
    Language.EN: {
        "refused": "The phone system refuses the registration ({status} {reason}).",
        "credentialsRefused": "The phone system does not accept the SIP user or password "
        "({status}).",
        "notGranted": "The phone system accepts the registration, but for 0 seconds "
        "(asked for: {requested} s); the service counts as not registered.",
        "timeout": "The phone system does not answer (no answer within {seconds} s).",
        "challengeUnsupported": "The phone system asks for a login method the Rundruf "
        "Manager Service does not support.",
        "network": "The registration cannot be sent (network error).",
        "unresolvable": 'The phone system\'s name "{host}" does not resolve.',
        "localAddress": "The Rundruf Manager Service's own SIP address is set wrong "
        '("{address}" is no address the phone system can reach it at; '
        "RUNDRUF_AGENT_SIP_LOCAL_HOST).",
        "connectFailed": "The phone system accepts no connection at {host}:{port} ({reason}).",
        "tlsCertificate": 'The TLS certificate of the phone system "{host}" is not accepted '
        "({reason}); nothing is sent unencrypted. It must be issued for this name by a "
        "trusted authority (RUNDRUF_AGENT_SIP_TLS_CA_FILE).",
        "tlsClientCertificate": 'The phone system "{host}" asks for a client certificate from '
        "the Rundruf Manager Service or refuses the one it sends ({reason}; "
        "RUNDRUF_AGENT_SIP_TLS_CERT_FILE).",
        "tlsHandshake": 'The TLS connection to the phone system "{host}" cannot be made '
        "({reason}).",
        "tlsConfig": "A TLS file of the Rundruf Manager Service cannot be used "
        '({setting}: "{file}").',
        "connectionLost": "The TLS connection to the phone system at {host}:{port} broke "
        "({reason}); the Rundruf Manager Service connects again.",
        "internal": "An internal error of the Rundruf Manager Service (details in its log).",
        "other": 'Error "{code}".',
        "detail": "Technical detail: {detail}",
    },
}


def _fill(template: str, values: Mapping[str, object]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m[1], "")), template)


def describe_sip_error(language: Language, error: SipError) -> str:
    """The error in a sentence, and the agent's detail after it when there is one."""
    texts = _ERRORS[language]
    template = texts[error.code] if error.code in CODES else texts["other"]
    sentence = _fill(template, {**error.params, "code": error.code}).replace(" )", ")")
    if error.detail:
        return f"{sentence}\n{_fill(texts['detail'], {'detail': error.detail})}"
    return sentence
