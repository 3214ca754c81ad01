"""A real BIND9 ``named`` on 127.0.0.1 with TSIG-signed dynamic zones, for the DNS and certificates tests.

Usage in a test module (the import registers the fixtures)::

    from tests.servers.bind import bind_factory, bind_server  # noqa: F401

    def test_something(bind_server):            # apps.example.test, key "ddns-key" (hmac-sha256)
        bind_server.query("web.apps.example.test", "A")

    def test_other(bind_factory):
        server = bind_factory(zones=("example.org",), key_name="other", algorithm="hmac-sha512")

Everything (config, zone files, journal, pid file, log) lives in the test's temporary directory; named
runs in the foreground (``-g``) and stops with SIGTERM at teardown. ``stop()`` then ``start()`` restarts it
on the same port with the zone data kept (named replays its journal), to test a server that goes away.
See /work/shared/notes/REAL_SERVERS.md section 1 for why each option is there.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest

from tests.servers import free_port, log_tail, require_binary, start_process, stop_process
from watcher.rfc2136 import TSIGKey

NAMED = "/usr/sbin/named"
TSIG_KEYGEN = "/usr/sbin/tsig-keygen"
DEFAULT_ZONE = "apps.example.test"
DEFAULT_KEY_NAME = "ddns-key"

_NAMED_CONF = """\
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    dump-file "{d}/named_dump.db";
    statistics-file "{d}/named.stats";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-recursion {{ none; }};
    allow-query {{ any; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
include "{key_file}";
{zones}
"""

_ZONE_CONF = """\
zone "{zone}" {{
    type primary;
    file "{d}/{zone}.zone";
    {policy}
    {transfer}
}};
"""

_ZONE_FILE = """\
$TTL 60
@   IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 60 60 3600 60 )
    IN NS  ns1.{zone}.
ns1 IN A   127.0.0.1
"""

_KEY_STATEMENT = re.compile(r'key\s+"([^"]+)"\s*\{\s*algorithm\s+([\w-]+);\s*secret\s+"([^"]+)";\s*\};')


@dataclass
class BindServer:
    """One named process and its files; ``zone`` is the first (updatable) zone, ``key`` may update it."""

    host: str
    port: int
    zone: str
    zones: tuple[str, ...]
    key: TSIGKey
    key_file: Path
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def conf_file(self) -> Path:
        return self.directory / "named.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "named.log"

    def start(self) -> None:
        """Start named (again) on the same port and wait until every zone answers its SOA query."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("named is already running")
        command = [NAMED, "-g", "-4", "-n", "1", "-c", str(self.conf_file)]
        self.process = start_process(
            "named", command, self.log_file, lambda: all(self._answers_soa(zone) for zone in self.zones)
        )

    def stop(self) -> None:
        """SIGTERM; named writes its journal and exits in milliseconds."""
        stop_process(self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def query(self, name: str, rdtype: str) -> list[str]:
        """The values named holds for ``name``/``rdtype`` (sorted; TXT decoded and joined; [] if none).

        Asks over TCP without recursion so that the answer is the zone's own data, never a cache.
        """
        wanted = dns.rdatatype.from_text(rdtype)
        query = dns.message.make_query(name, wanted)
        query.flags &= ~dns.flags.RD
        response = dns.query.tcp(query, self.host, port=self.port, timeout=5)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise AssertionError(f"query {name} {rdtype}: {dns.rcode.to_text(response.rcode())}")
        values = []
        for rrset in response.answer:
            if rrset.name.to_text(omit_final_dot=True).lower() != name.rstrip(".").lower():
                continue
            if rrset.rdtype != wanted:
                continue
            for rdata in rrset:
                if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
                    values.append(b"".join(rdata.strings).decode())
                else:
                    values.append(rdata.to_text())
        return sorted(values)

    def ttl(self, name: str, rdtype: str) -> int | None:
        """The TTL of the RRset, or None when there is none."""
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        response = dns.query.tcp(query, self.host, port=self.port, timeout=5)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.from_text(rdtype):
                return int(rrset.ttl)
        return None

    def serial(self, zone: str | None = None) -> int:
        """The zone's SOA serial: it moves on every change named accepts."""
        (soa,) = self.query(zone or self.zone, "SOA")
        return int(soa.split()[2])

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines)

    def _answers_soa(self, zone: str) -> bool:
        query = dns.message.make_query(zone, "SOA")
        try:
            response = dns.query.udp(query, self.host, port=self.port, timeout=0.2)
        except (OSError, dns.exception.DNSException):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def make_key_file(path: Path, key_name: str, algorithm: str) -> TSIGKey:
    """Write a key file with the real ``tsig-keygen``, exactly as an operator would, and read it back."""
    keygen = require_binary(TSIG_KEYGEN, "bind9-utils")
    text = subprocess.run(
        [keygen, "-a", algorithm, key_name], check=True, capture_output=True, text=True
    ).stdout
    path.write_text(text)
    path.chmod(0o600)
    match = _KEY_STATEMENT.search(text)
    if match is None:
        raise RuntimeError(f"unexpected tsig-keygen output format for key {key_name}")
    name, algo, secret = match.groups()
    return TSIGKey(name=name, secret=secret, algorithm=algo)


def start_bind(
    directory: Path,
    *,
    zones: Sequence[str] = (DEFAULT_ZONE,),
    key_name: str = DEFAULT_KEY_NAME,
    algorithm: str = "hmac-sha256",
    policy: str = "allow-update",
    readonly_zones: Sequence[str] = (),
    port: int | None = None,
    allow_transfer: bool = True,
) -> BindServer:
    """Write the config into ``directory`` and start named.

    ``policy`` is how the key may update ``zones``: ``allow-update`` (anything in the zone) or
    ``update-policy`` (``grant KEY subdomain ZONE ANY``). ``readonly_zones`` are served but refuse every
    update (REFUSED), for tests of a server that says no. ``port`` defaults to a free one (TCP and UDP).
    ``allow_transfer`` lets the key transfer (AXFR) the updatable zones, as the dns plugin's sweep needs;
    without it every transfer is refused (the server-wide ``allow-transfer { none; }``).
    """
    require_binary(NAMED, "bind9")
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / f"{key_name}.key"
    key = make_key_file(key_file, key_name, algorithm)
    zone_confs = []
    for zone in (*zones, *readonly_zones):
        if zone in readonly_zones:
            rule = "allow-update { none; };"
        elif policy == "update-policy":
            rule = f'update-policy {{ grant "{key_name}" subdomain {zone}. ANY; }};'
        elif policy == "allow-update":
            rule = f'allow-update {{ key "{key_name}"; }};'
        else:
            raise ValueError(f"unknown policy {policy!r}")
        transfer = (
            f'allow-transfer {{ key "{key_name}"; }};'
            if allow_transfer and zone not in readonly_zones
            else ""
        )
        zone_confs.append(_ZONE_CONF.format(zone=zone, d=directory, policy=rule, transfer=transfer))
        (directory / f"{zone}.zone").write_text(_ZONE_FILE.format(zone=zone))
    port = port or free_port(udp_too=True)
    conf = _NAMED_CONF.format(d=directory, port=port, key_file=key_file, zones="".join(zone_confs))
    (directory / "named.conf").write_text(conf)
    server = BindServer(
        host="127.0.0.1",
        port=port,
        zone=zones[0],
        zones=(*zones, *readonly_zones),
        key=key,
        key_file=key_file,
        directory=directory,
    )
    server.start()
    return server


@pytest.fixture
def bind_factory(tmp_path: Path) -> Iterator[Callable[..., BindServer]]:
    """Start named instances with the given zones/key (see :func:`start_bind`); all stop at teardown."""
    servers: list[BindServer] = []

    def factory(**options: object) -> BindServer:
        server = start_bind(tmp_path / f"bind{len(servers)}", **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def bind_server(bind_factory: Callable[..., BindServer]) -> BindServer:
    """A started named serving ``apps.example.test``, updatable with the TSIG key ``ddns-key``."""
    return bind_factory()
