"""Signed dynamic DNS updates (RFC 2136 + TSIG) for the plugins that write DNS records.

The DNS plugin (a record per route) and the certificates plugin (ACME DNS-01 TXT records) both talk to an
authoritative server such as BIND9 through this module, so the parts that are easy to get subtly wrong
live once: reading a BIND key file, finding the zone of a name, classifying the server's answer, and
retrying only what a retry can fix.

Every failure reaches the caller as one :class:`DNSUpdateError` whose ``rcode`` names what went wrong
(``REFUSED``, ``NOTAUTH``, ``BADSIG``, ``TIMEOUT``, ...) and whose message is one line without secrets.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from watcher import errors

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The TSIG algorithms BIND's tsig-keygen offers, by the name a key file uses. The truncated variants and
# GSS-TSIG are left out: BIND key files do not name them this way.
ALGORITHMS: Mapping[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
DEFAULT_ALGORITHM = "hmac-sha256"
DEFAULT_PORT = 53
DEFAULT_TIMEOUT = 5.0
# A whole zone by AXFR: tens of thousands of records take well under a second on a LAN; a minute is ample.
TRANSFER_LIFETIME = 60.0


# --- keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TSIGKey:
    """A shared TSIG secret; the secret stays out of ``repr`` so a logged settings object cannot leak it."""

    name: str
    secret: str = field(repr=False)
    algorithm: str = DEFAULT_ALGORITHM

    def __post_init__(self) -> None:
        check_key(self.name, self.secret, self.algorithm, "the TSIG key")

    @property
    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        key_name = dns.name.from_text(self.name)
        return {key_name: dns.tsig.Key(key_name, self.secret, ALGORITHMS[self.algorithm])}


def check_key(name: str, secret: str, algorithm: str, source: str) -> None:
    """Raise ValueError naming ``source`` when a key cannot sign anything (checked once, at start)."""
    if not name:
        raise ValueError(f"{source}: the key name is empty.")
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as e:
        raise ValueError(f"{source}: the key name {name!r} is not a valid DNS name ({e}).") from None
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"{source}: unknown TSIG algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}."
        )
    try:
        decoded = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source}: the secret of key {name!r} is not valid base64.") from None
    if not decoded:
        raise ValueError(f"{source}: the secret of key {name!r} is empty.")


# A BIND configuration token: a quoted string, a brace or semicolon, or a bare word. Comments are
# recognised by the tokenizer, outside quotes only: base64 secrets may contain "//".
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>(?://|\#)[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<punct>[{};])
    | (?P<word>[^\s{};"\#/]+(?:/(?![/*])[^\s{};"\#/]*)*)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(text: str, source: str) -> Iterator[str]:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            snippet = text[position : position + 10].split("\n")[0]
            raise ValueError(f"{source}: cannot parse line {line} near {snippet!r}.")
        position = match.end()
        kind = match.lastgroup
        if kind in ("space", "line_comment", "block_comment"):
            continue
        yield match.group()


def parse_key_file(text: str, source: str = "key file") -> TSIGKey:
    """Read a BIND ``key`` statement as ``tsig-keygen`` writes it.

    ``key "name" { algorithm hmac-sha256; secret "base64"; };`` with any whitespace, line breaks and
    comments (``//``, ``#``, ``/* */``); the key name may be quoted or not. Exactly one key is expected.
    Raises ValueError naming ``source`` and what is wrong.
    """
    tokens = list(_tokens(text, source))
    keys: list[TSIGKey] = []
    position = 0

    def take(what: str) -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"{source}: unexpected end of file, expected {what}.")
        token = tokens[position]
        position += 1
        return token

    def expect(expected: str) -> None:
        token = take(repr(expected))
        if token != expected:
            raise ValueError(f"{source}: expected {expected!r} but found {token!r}.")

    while position < len(tokens):
        statement = take("a 'key' statement")
        if statement.lower() != "key":
            raise ValueError(f"{source}: expected a 'key' statement but found {statement!r}.")
        name = _unquote(take("the key name"))
        expect("{")
        values: dict[str, str] = {}
        while True:
            clause = take("'algorithm', 'secret' or '}'")
            if clause == "}":
                break
            clause = clause.lower()
            if clause not in ("algorithm", "secret"):
                raise ValueError(f"{source}: unknown clause {clause!r} in key {name!r}.")
            if clause in values:
                raise ValueError(f"{source}: key {name!r} has more than one {clause!r}.")
            values[clause] = _unquote(take(f"the value of {clause!r}"))
            expect(";")
        expect(";")
        for clause in ("algorithm", "secret"):
            if clause not in values:
                raise ValueError(f"{source}: key {name!r} has no {clause!r}.")
        algorithm = values["algorithm"].lower().rstrip(".")
        keys.append(_make_key(name, values["secret"], algorithm, source))
    if len(keys) != 1:
        raise ValueError(f"{source}: expected exactly one key statement, found {len(keys)}.")
    return keys[0]


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _make_key(name: str, secret: str, algorithm: str, source: str) -> TSIGKey:
    # Validate before constructing so that the message names the source, not "the TSIG key".
    check_key(name, secret, algorithm, source)
    return TSIGKey(name=name, secret=secret, algorithm=algorithm)


# --- the server and its settings -------------------------------------------------------------------


@dataclass(frozen=True)
class DNSServer:
    """Where updates go: an authoritative server (name or IP), its port, the key, a per-query timeout."""

    host: str
    port: int = DEFAULT_PORT
    key: TSIGKey | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def server_from_config(config: Mapping[str, str]) -> tuple[DNSServer, str | None]:
    """Build the server settings from a plugin's ini section; ValueError names the offending key.

    Keys: ``dns_server`` (required), ``dns_port``, ``timeout``, ``dns_zone`` (optional: None means find it
    later with :func:`find_zone`), and either ``dns_key_file`` or ``dns_key_name`` + ``dns_key_secret``
    (+ ``dns_key_algorithm``, default hmac-sha256). With no key at all, updates go unsigned (for servers
    that allow updates by address).
    """
    host = config.get("dns_server", "").strip()
    if not host:
        raise ValueError("dns_server is not set: name or IP address of the DNS server that takes updates.")
    if not _valid_host(host):
        raise ValueError(f"dns_server {host!r} is neither an IP address nor a host name.")
    port = _parse_int(config.get("dns_port", ""), "dns_port", DEFAULT_PORT, 1, 65535)
    timeout = _parse_float(config.get("timeout", ""), "timeout", DEFAULT_TIMEOUT)
    zone_text = config.get("dns_zone", "").strip()
    zone = normalize_name(zone_text, "dns_zone") if zone_text else None
    key = _key_from_config(config)
    return DNSServer(host=host, port=port, key=key, timeout=timeout), zone


def _key_from_config(config: Mapping[str, str]) -> TSIGKey | None:
    key_file = config.get("dns_key_file", "").strip()
    inline = {k: config.get(k, "").strip() for k in ("dns_key_name", "dns_key_secret", "dns_key_algorithm")}
    if key_file:
        given = [k for k in ("dns_key_name", "dns_key_secret") if inline[k]]
        if given:
            raise ValueError(
                f"dns_key_file and {' and '.join(given)} are both set: choose one way to give the key."
            )
        try:
            with open(key_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"dns_key_file {key_file!r} cannot be read: {e.strerror or e}.") from None
        except UnicodeDecodeError:
            raise ValueError(f"dns_key_file {key_file!r} is not a text file.") from None
        return parse_key_file(text, f"dns_key_file {key_file!r}")
    if not inline["dns_key_name"] and not inline["dns_key_secret"]:
        if inline["dns_key_algorithm"]:
            raise ValueError("dns_key_algorithm is set but dns_key_name and dns_key_secret are not.")
        return None
    for k in ("dns_key_name", "dns_key_secret"):
        if not inline[k]:
            other = "dns_key_secret" if k == "dns_key_name" else "dns_key_name"
            raise ValueError(f"{k} is not set but {other} is: give both (or dns_key_file).")
    algorithm = (inline["dns_key_algorithm"] or DEFAULT_ALGORITHM).lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"dns_key_algorithm {algorithm!r} is unknown; use one of {', '.join(ALGORITHMS)}.")
    return _make_key(inline["dns_key_name"], inline["dns_key_secret"], algorithm, "dns_key_secret")


def _parse_int(text: str, key: str, default: int, low: int, high: int) -> int:
    text = text.strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key} {text!r} is not a whole number.") from None
    if not low <= value <= high:
        raise ValueError(f"{key} {value} is out of range {low}..{high}.")
    return value


def _parse_float(text: str, key: str, default: float) -> float:
    text = text.strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key} {text!r} is not a number of seconds.") from None
    if not 0 < value <= 300:
        raise ValueError(f"{key} {value} must be more than 0 and at most 300 seconds.")
    return value


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def normalize_name(text: str, what: str = "name") -> str:
    """A DNS name as lower-case text without the trailing dot; ValueError naming ``what`` if invalid."""
    try:
        name = dns.name.from_text(text.strip())
    except dns.exception.DNSException as e:
        raise ValueError(f"{what} {text!r} is not a valid DNS name ({e}).") from None
    if name == dns.name.root:
        raise ValueError(f"{what} {text!r} is the DNS root, not a zone.")
    return name.to_text(omit_final_dot=True).lower()


def _absolute(text: str) -> dns.name.Name:
    return dns.name.from_text(text, origin=dns.name.root)


def in_zone(fqdn: str, zone: str) -> bool:
    """True when ``fqdn`` is ``zone`` itself or below it."""
    return _absolute(fqdn).is_subdomain(_absolute(zone))


# --- errors and retries ----------------------------------------------------------------------------


class DNSUpdateError(errors.WatcherError):
    """A query or update the DNS server did not carry out.

    ``rcode`` is the DNS rcode or TSIG error name (``REFUSED``, ``NOTAUTH``, ``BADSIG``, ``BADKEY``,
    ``SERVFAIL``, ...) or one of ``TIMEOUT``, ``UNREACHABLE``, ``UNRESOLVED`` when no answer came.
    ``transient`` says whether trying again later can help.
    """

    def __init__(self, message: str, *, rcode: str, zone: str = "", transient: bool = False):
        self.rcode = rcode
        self.zone = zone
        self.transient = transient
        super().__init__(message)


class PrerequisiteFailed(DNSUpdateError):
    """The zone was not in the state an update required (YXDOMAIN, NXDOMAIN, YXRRSET, NXRRSET).

    Not a failure of the server: the caller read a state that changed before its update arrived (or
    asked for something that is not there) and decides again.
    """


class ZoneNotFound(DNSUpdateError):
    """No zone served by the server contains the name (the server refused, or delegates it away)."""


_PREREQUISITE_RCODES = {dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXRRSET}
_TRANSIENT_RCODES = {dns.rcode.SERVFAIL}
_EXPLAIN = {
    "REFUSED": "the server refused it (is the key allowed to update this zone?)",
    "NOTAUTH": "the server is not authoritative for the zone or does not accept the key",
    "NOTZONE": "a name in the update is outside the zone",
    "SERVFAIL": "the server failed to process it",
    "FORMERR": "the server could not parse it",
    "NOTIMP": "the server does not implement dynamic updates",
    "BADSIG": "the server rejected the TSIG signature (wrong secret or algorithm)",
    "BADKEY": "the server does not know the TSIG key name",
    "BADTIME": "the server rejected the TSIG time (check the clocks)",
    "BADTRUNC": "the server rejected the TSIG truncation",
    "TIMEOUT": "no answer before the timeout",
    "UNREACHABLE": "the server could not be reached",
    "UNRESOLVED": "the server's name does not resolve",
}


def explain(rcode: str) -> str:
    """A few words on what an rcode means, for log lines."""
    return _EXPLAIN.get(rcode, "the server answered with an error")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for what may pass by itself (timeouts, connection refused, SERVFAIL).

    Three tries with 0.3 s then 0.9 s in between: long enough for a restarting server, short enough that
    a dead server costs each event only about a second plus the timeouts.
    """

    attempts: int = 3
    first_delay: float = 0.3
    factor: float = 3.0


DEFAULT_RETRY = RetryPolicy()


def with_retries(action: Callable[[], T], what: str, policy: RetryPolicy = DEFAULT_RETRY) -> T:
    """Run ``action``; on a transient :class:`DNSUpdateError`, wait and try again a bounded number of times.

    The one place retries happen, so that nothing upstream multiplies them.
    """
    delay = policy.first_delay
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except DNSUpdateError as e:
            if not e.transient or attempt == policy.attempts:
                raise
            logger.debug(
                "%s failed (%s), try %d of %d in %.1f s.", what, e.rcode, attempt + 1, policy.attempts, delay
            )
            time.sleep(delay)
            delay *= policy.factor
    raise AssertionError("unreachable")  # pragma: no cover


def _address(host: str, zone: str) -> str:
    """dnspython wants an IP address: resolve a server name with the system resolver, each time."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise DNSUpdateError(
            f"The DNS server name {host!r} does not resolve ({e.strerror or e}).",
            rcode="UNRESOLVED",
            zone=zone,
            transient=True,
        ) from None
    return str(infos[0][4][0])


def _exchange(
    message: dns.message.Message, server: DNSServer, *, zone: str, what: str, tcp: bool
) -> dns.message.Message:
    """Send one message and classify every way it can fail; returns only NOERROR/NXDOMAIN answers."""
    address = _address(server.host, zone)

    def ask() -> dns.message.Message:
        if tcp:
            return dns.query.tcp(message, address, port=server.port, timeout=server.timeout)
        response, _ = dns.query.udp_with_fallback(message, address, port=server.port, timeout=server.timeout)
        return response

    response = _classified(ask, server, zone=zone, what=what)
    rcode = response.rcode()
    is_update = message.opcode() == dns.opcode.UPDATE
    if rcode == dns.rcode.NOERROR or (rcode == dns.rcode.NXDOMAIN and not is_update):
        return response
    raise _failure(dns.rcode.to_text(rcode), server, zone, what, rcode)


def _classified(action: Callable[[], T], server: DNSServer, *, zone: str, what: str) -> T:
    """Run one exchange with the server; every way it can fail becomes one :class:`DNSUpdateError`."""
    try:
        return action()
    except dns.tsig.PeerBadKey:
        raise _failure("BADKEY", server, zone, what) from None
    except dns.tsig.PeerBadSignature:
        raise _failure("BADSIG", server, zone, what) from None
    except dns.tsig.PeerBadTime:
        raise _failure("BADTIME", server, zone, what) from None
    except dns.tsig.PeerBadTruncation:
        raise _failure("BADTRUNC", server, zone, what) from None
    except dns.exception.Timeout:
        raise _failure("TIMEOUT", server, zone, what, transient=True) from None
    except dns.xfr.TransferError as e:  # a zone transfer the server answered with an error rcode
        raise _failure(dns.rcode.to_text(e.rcode), server, zone, what, e.rcode) from None
    except (ConnectionError, EOFError, OSError) as e:
        # Refused, reset, closed mid-answer, network unreachable: the server is down or restarting.
        logger.debug("%s at %s:%s: %s", what, server.host, server.port, e)
        raise _failure("UNREACHABLE", server, zone, what, transient=True) from None
    except dns.exception.DNSException as e:
        # A malformed or unexpected answer (e.g. unsigned when we signed): not something a retry fixes.
        raise DNSUpdateError(
            f"{what} at {server.host}:{server.port} failed: the answer could not be used ({e}).",
            rcode="BADRESPONSE",
            zone=zone,
        ) from None


def _failure(
    name: str,
    server: DNSServer,
    zone: str,
    what: str,
    rcode: dns.rcode.Rcode | None = None,
    *,
    transient: bool = False,
) -> DNSUpdateError:
    """The error for a failure named ``name``; an answer's ``rcode`` decides its class and transience."""
    error: type[DNSUpdateError] = DNSUpdateError
    if rcode is not None:
        transient = rcode in _TRANSIENT_RCODES
        if rcode in _PREREQUISITE_RCODES:
            error = PrerequisiteFailed
    return error(
        f"{what} at {server.host}:{server.port} failed: {name}, {explain(name)}.",
        rcode=name,
        zone=zone,
        transient=transient,
    )


# --- zones -----------------------------------------------------------------------------------------


def find_zone(name: str, server: DNSServer, resolv_conf: str | None = None) -> str:
    """Find the zone that holds ``name`` by asking for SOA records, walking up from the name.

    Asks ``server`` directly (no recursion), or, when ``resolv_conf`` is given, the name servers listed in
    that file with recursion, as the 2017 plugin allowed for servers hidden from the normal resolvers.
    Raises :class:`ZoneNotFound` when no served zone holds the name, :class:`DNSUpdateError` when the
    servers do not answer.
    """
    fqdn = _absolute(normalize_name(name))
    targets: Sequence[DNSServer]
    recursive = resolv_conf is not None
    targets = [server] if resolv_conf is None else _servers_from_resolv_conf(resolv_conf, server.timeout)
    for number, target in enumerate(targets, start=1):
        try:
            return with_retries(_bind(_walk_soa, fqdn, target, recursive), f"Zone lookup for {name}")
        except ZoneNotFound:
            raise
        except DNSUpdateError:
            if number == len(targets):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _bind(function: Callable[..., T], *args: object) -> Callable[[], T]:
    return lambda: function(*args)


def _servers_from_resolv_conf(path: str, timeout: float) -> list[DNSServer]:
    if not os.path.isfile(path):
        raise ValueError(f"resolv_conf {path!r} does not exist.")
    try:
        resolver = dns.resolver.Resolver(filename=path, configure=True)
    except dns.resolver.NoResolverConfiguration:
        raise ValueError(f"resolv_conf {path!r} lists no nameserver.") from None
    except (OSError, dns.exception.DNSException) as e:
        raise ValueError(f"resolv_conf {path!r} cannot be used: {e}") from None
    return [DNSServer(host=str(ns), port=resolver.port, timeout=timeout) for ns in resolver.nameservers]


def _walk_soa(fqdn: dns.name.Name, server: DNSServer, recursive: bool) -> str:
    candidate = fqdn
    text = fqdn.to_text(omit_final_dot=True)
    while candidate != dns.name.root:
        query = dns.message.make_query(candidate, dns.rdatatype.SOA)
        if not recursive:
            query.flags &= ~dns.flags.RD
        try:
            response = _exchange(query, server, zone="", what=f"SOA query for {candidate}", tcp=False)
        except DNSUpdateError as e:
            if e.rcode in ("REFUSED", "NOTAUTH"):
                raise ZoneNotFound(
                    f"No zone on {server} holds {text}: the server does not serve it ({e.rcode}).",
                    rcode=e.rcode,
                ) from None
            raise
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name == candidate:
                return candidate.to_text(omit_final_dot=True).lower()
        aliased = any(r.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.DNAME) for r in response.answer)
        if not aliased:
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA and candidate.is_subdomain(rrset.name):
                    return rrset.name.to_text(omit_final_dot=True).lower()
            if not recursive and any(r.rdtype == dns.rdatatype.NS for r in response.authority):
                raise ZoneNotFound(
                    f"No zone on {server} holds {text}: the server delegates it to other servers.",
                    rcode="REFERRAL",
                )
        # An alias, or an answer without anything useful: the zone starts higher up.
        candidate = candidate.parent()
    raise ZoneNotFound(f"No zone on {server} holds {text}.", rcode="NOZONE")


# --- updates ---------------------------------------------------------------------------------------


def txt_rdata(value: str) -> dns.rdata.Rdata:
    """One TXT record holding ``value``, split into 255-byte strings as the wire format requires."""
    data = value.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def rdata_text(rdata: dns.rdata.Rdata) -> str:
    """TXT as its joined, decoded value (what was stored); anything else in zone-file text form."""
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    return str(rdata.to_text())


class Updater:
    """Updates of one zone on one server, each sent as one signed message over TCP."""

    def __init__(
        self, server: DNSServer, zone: str, retry: RetryPolicy = DEFAULT_RETRY, *, dry_run: bool = False
    ):
        self.server = server
        self.zone = normalize_name(zone, "zone")
        self.retry = retry
        self.dry_run = dry_run

    def new_update(self) -> dns.update.UpdateMessage:
        """An empty update for the zone, signed with the key when there is one.

        Give it names from :meth:`name` (absolute): dnspython reads a plain string as relative to the zone.
        """
        key = self.server.key
        if key is None:
            return dns.update.UpdateMessage(self.zone)
        return dns.update.UpdateMessage(
            self.zone,
            keyring=key.keyring,
            keyname=dns.name.from_text(key.name),
            keyalgorithm=ALGORITHMS[key.algorithm],
        )

    def name(self, fqdn: str) -> dns.name.Name:
        """``fqdn`` as an absolute name; ValueError when it is outside the zone (the server says NOTZONE)."""
        name = _absolute(fqdn)
        if not name.is_subdomain(_absolute(self.zone)):
            raise ValueError(f"{fqdn} is outside the zone {self.zone}.")
        return name

    def send(self, update: dns.update.UpdateMessage) -> None:
        """Send over TCP (updates may be large; TCP also fails fast when the server is down).

        Transient failures are retried; the last one, and every other failure, raises DNSUpdateError.
        In dry-run only the prerequisites are sent (an UPDATE with an empty update section checks them
        and changes nothing, RFC 2136 3.2), so callers still see PrerequisiteFailed exactly as they would;
        when they hold, the update that would have been sent is logged at INFO.
        """
        what = f"DNS update of zone {self.zone}"
        message = update
        if self.dry_run:
            message = self.new_update()
            message.prerequisite.extend(update.prerequisite)
        with_retries(
            lambda: _exchange(message, self.server, zone=self.zone, what=what, tcp=True), what, self.retry
        )
        if self.dry_run:
            logger.info(
                "dry-run: would update zone %s: %s (prerequisites: %s)",
                self.zone,
                "; ".join(r.to_text() for r in update.update) or "nothing",
                "; ".join(r.to_text() for r in update.prerequisite) or "none",
            )

    def set_txt(self, fqdn: str, value: str, ttl: int = 60) -> None:
        """Add one TXT value next to any others at the name (ACME DNS-01 may need several)."""
        update = self.new_update()
        update.add(self.name(fqdn), ttl, txt_rdata(value))
        self.send(update)

    def delete_txt(self, fqdn: str, value: str) -> None:
        """Remove that one TXT value; the others at the name stay."""
        update = self.new_update()
        update.delete(self.name(fqdn), txt_rdata(value))
        self.send(update)

    def transfer(self) -> dict[str, dict[str, tuple[int, list[str]]]]:
        """The zone's data by AXFR, signed with the key: name (lower case, no final dot) -> type ->
        (TTL, values as :meth:`query` gives them).

        How a sweep finds every name it owns, including those of routes deleted while the watcher was
        down. A server that does not allow the key to transfer the zone answers REFUSED or NOTAUTH: a
        :class:`DNSUpdateError` that is not transient. Timeouts and a server that is down are retried.
        """
        origin = _absolute(self.zone)
        what = f"Transfer (AXFR) of zone {self.zone}"
        key = self.server.key

        def pull() -> dns.zone.Zone:
            query = dns.message.make_query(origin, dns.rdatatype.AXFR)
            if key is not None:
                query.use_tsig(
                    key.keyring, keyname=dns.name.from_text(key.name), algorithm=ALGORITHMS[key.algorithm]
                )
            zone = dns.zone.Zone(origin, relativize=False)
            address = _address(self.server.host, self.zone)
            timeout = self.server.timeout
            _classified(
                lambda: dns.query.inbound_xfr(
                    address, zone, query, port=self.server.port, timeout=timeout, lifetime=TRANSFER_LIFETIME
                ),
                self.server,
                zone=self.zone,
                what=what,
            )
            return zone

        data: dict[str, dict[str, tuple[int, list[str]]]] = {}
        for name, rdataset in with_retries(pull, what, self.retry).iterate_rdatasets():
            types = data.setdefault(name.to_text(omit_final_dot=True).lower(), {})
            types[dns.rdatatype.to_text(rdataset.rdtype)] = (
                int(rdataset.ttl),
                [rdata_text(rdata) for rdata in rdataset],
            )
        return data

    def query(self, fqdn: str, rdtype: str) -> list[str]:
        """Ask the server itself (not a resolver, no recursion): the values it holds now, [] if none.

        TXT values come back joined and decoded; other types in zone-file text (``192.0.2.1``,
        ``router.example.test.``). A CNAME at the name is not followed. Beware wildcards: for a name that
        does not exist, the server answers from a covering ``*`` record; prerequisites never do.
        """
        return self.lookup(fqdn, rdtype)[1]

    def lookup(self, fqdn: str, rdtype: str) -> tuple[int, list[str]]:
        """Like :meth:`query`, with the RRset's TTL (0 when there is none)."""
        name = _absolute(fqdn)
        wanted = dns.rdatatype.from_text(rdtype)
        query = dns.message.make_query(name, wanted)
        query.flags &= ~dns.flags.RD
        what = f"Query for {fqdn} {rdtype}"

        def ask() -> dns.message.Message:
            return _exchange(query, self.server, zone=self.zone, what=what, tcp=False)

        response = with_retries(ask, what, self.retry)
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == wanted:
                return int(rrset.ttl), [rdata_text(rdata) for rdata in rrset]
        return 0, []
