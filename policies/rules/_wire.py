"""Reading resource properties the way the engine sends them, without losing unknowns.

The policy SDK hands rules `args.props` wrapped in a proxy that raises the moment a rule
touches a value that is unknown during preview, and it turns that exception into an
ADVISORY "can't run during preview". A guardrail that must fail closed cannot live with
that: it has to *see* the unknown and decide. So every rule here works on the raw
property tree (`raw()` strips the SDK's proxies), where an unknown is still visible as
the engine's sentinel string, and asks `is_unknown()` at each deciding value.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from pulumi_policy.secret import Secret

# The engine's sentinels for values that are unknown during preview. The engine itself
# only sends the string one; the SDK knows the others, so accept all of them.
UNKNOWN_SENTINELS = frozenset({
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string (and what the engine sends for all)
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
})
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_SENTINELS


def raw(value: Any) -> Any:
    """Plain dicts/lists from the SDK's proxies; unknown sentinels kept, secrets unwrapped.

    Secrets are unwrapped because the rules need to judge their shape (a Kubernetes env
    value is plaintext in the object whether or not Pulumi encrypts it in state); rules
    never put a property's value into a message unless it is an enumeration or a CIDR.
    """
    # The SDK's proxies (unknown-checking and secrets-preserving) expose their target
    # under the "__target" key; reading it never raises.
    if type(value).__name__ in _SDK_PROXIES:
        value = value["__target"]
    if isinstance(value, Secret):
        return raw(value.value)
    if isinstance(value, Mapping):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return raw(value.get("value"))
        return {k: raw(value[k]) for k in value}
    if isinstance(value, (list, tuple)):
        return [raw(v) for v in value]
    return value


# pulumi_policy's proxy classes (private names, stable across its 1.x releases).
_SDK_PROXIES = frozenset({"_DictProxy", "_ListProxy", "_DictSecretsProxy", "_ListSecretsProxy"})


# ---- typed reads ------------------------------------------------------------------------

def as_bool(value: Any) -> Optional[bool] | str:
    """True/False, None when unset, or the unknown sentinel.

    pulumi-aws types several launch template booleans as strings ("true"/"false"), and
    Kubernetes annotations are always strings, so both spellings count.
    """
    if value is None or is_unknown(value):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered in ("false", ""):
            return False
    if isinstance(value, (int, float)):
        return bool(value)
    # Anything else ("yes", "1") is not a value AWS accepts; treat it as set.
    return True


def as_number(value: Any) -> Optional[float] | str:
    """A number (the wire sends every number as a float), None, or the unknown sentinel."""
    if value is None or is_unknown(value):
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def as_list(value: Any) -> list:
    """A list to iterate: empty when unset or unknown, a scalar wrapped.

    Callers for whom an unknown list matters ask is_unknown() first."""
    if value is None or is_unknown(value):
        return []
    if isinstance(value, list):
        return value
    return [value]


def as_dict(value: Any) -> dict:
    """A mapping to read from: empty when unset, unknown or not a mapping.

    Callers for whom an unknown object matters ask is_unknown() first."""
    return value if isinstance(value, dict) else {}


def show(value: Any) -> str:
    """A non-secret value as a reviewer reads it in a message."""
    if value is None:
        return "not set"
    if is_unknown(value):
        return "unknown during preview"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)


# ---- addresses --------------------------------------------------------------------------

# Address space that is never routed on the internet: RFC 1918, CGNAT, loopback,
# link-local, IPv6 unique-local and link-local. Ingress from these cannot come from the
# internet (traffic is only reachable through a VPC, peering, VPN or Direct Connect).
_NON_INTERNET = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128",
))


def parse_cidr(text: Any) -> Optional[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if not isinstance(text, str) or is_unknown(text):
        return None
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def is_world(network) -> bool:
    """0.0.0.0/0 or ::/0, however it is spelled."""
    return network is not None and network.prefixlen == 0


def admits_internet(text: Any, allowed: Sequence[str] = ()) -> bool:
    """Whether a CIDR lets internet addresses in that the allow list does not cover.

    A CIDR that does not parse is treated as admitting the internet: AWS would reject it,
    and a guardrail must not pass what it cannot read. Allow-list entries that are the
    whole internet are ignored, so the exception list can never switch the rule off.
    """
    network = parse_cidr(text)
    if network is None:
        return True
    if any(_within(network, private) for private in _NON_INTERNET):
        return False
    for entry in allowed:
        allowed_network = parse_cidr(entry)
        if allowed_network is None or is_world(allowed_network):
            continue
        if _within(network, allowed_network):
            return False
    return True


def _within(inner, outer) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)
