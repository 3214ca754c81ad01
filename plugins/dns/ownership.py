"""The ownership TXT value, written and read the way external-dns does it.

``heritage=event-watcher,event-watcher/owner=<owner_id>,event-watcher/resource=route/<namespace>/<name>``:
the heritage says the record was made by this program, the owner which deployment of it (two clusters
may share a zone), the resource which route. Only names whose TXT says all three match are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

HERITAGE = "event-watcher"


@dataclass(frozen=True)
class Claim:
    """A parsed ownership value: who wrote the record, for which route."""

    owner: str
    resource: str  # route/<namespace>/<name>

    @property
    def value(self) -> str:
        return f"heritage={HERITAGE},{HERITAGE}/owner={self.owner},{HERITAGE}/resource={self.resource}"

    @property
    def route(self) -> tuple[str, str] | None:
        """(namespace, name) when the resource is a route."""
        kind, _, rest = self.resource.partition("/")
        namespace, _, name = rest.partition("/")
        if kind != "route" or not name:
            return None
        return namespace, name


def claim_for(owner: str, namespace: str, name: str) -> Claim:
    return Claim(owner=owner, resource=f"route/{namespace}/{name}")


def parse(value: str) -> Claim | None:
    """The claim in a TXT value, or None when it is not one of ours (another heritage, or free text)."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, field_value = part.partition("=")
        if not sep:
            return None
        fields[key.strip()] = field_value.strip()
    if fields.get("heritage") != HERITAGE:
        return None
    owner = fields.get(f"{HERITAGE}/owner", "")
    resource = fields.get(f"{HERITAGE}/resource", "")
    if not owner or not resource:
        return None
    return Claim(owner=owner, resource=resource)
