"""Per-sink privacy policy: keep, mask, hash or drop the phone numbers and SIP URIs of a record.

Each sink applies its own policy to the JSON document of a record just before writing it, so
a log kept on the PBX host may hold full numbers while a webhook to a third party does not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from callcause.config import Secret, Section

ACTIONS = ("keep", "mask", "hash", "drop")

# `sip:user@host`, `sips:user@host`, a bare `user@host` as in FreeSWITCH channel names
# (`sofia/external/486@10.0.0.5:5070`), and `tel:+4930...`: the user part is the private bit.
_USER_AT_HOST = re.compile(r"(?P<scheme>sips?:)?(?P<user>[^\s@/:;<>\"']+)@(?P<host>[^\s;<>\"']+)")
_TEL = re.compile(r"tel:(?P<number>[^\s;<>\"']+)")
# Fields of `call` that may carry a SIP URI or a user@host, apart from `from` and `to`.
URI_FIELDS = ("channel",)


def mask_number(value: str) -> str:
    """`+4930123456` -> `+4930****56`: keep a short prefix (country/area) and the last two
    characters, hide at least four in between; short extensions keep only the last two."""
    n = len(value)
    if n <= 2:
        return "*" * n
    prefix = max(0, min(5, n - 6))
    return value[:prefix] + "*" * (n - prefix - 2) + value[-2:]


def hash_value(value: str, salt: Secret) -> str:
    """A keyed hash, so the same number hashes alike within one deployment (consumers can still
    count and join on it) but cannot be reversed by hashing every possible number."""
    digest = hmac.new(salt.reveal().encode(), value.encode(), hashlib.sha256).hexdigest()
    return "hmac-sha256:" + digest[:32]


def _mask_uris(text: str) -> str:
    text = _TEL.sub(lambda m: "tel:" + mask_number(m.group("number")), text)
    return _USER_AT_HOST.sub(
        lambda m: f"{m.group('scheme') or ''}{mask_number(m.group('user'))}@{m.group('host')}", text)


@dataclass(slots=True, frozen=True)
class PiiPolicy:
    """What to do with `call.from`, `call.to`, and the SIP URIs in other `call` fields."""

    from_: str = "keep"
    to: str = "keep"
    uris: str = "keep"
    salt: Secret | None = None

    @property
    def keeps_all(self) -> bool:
        return self.from_ == self.to == self.uris == "keep"

    def _apply(self, action: str, value: Any, *, uri_field: bool) -> Any:
        if action == "keep" or not isinstance(value, str) or not value:
            return value
        if action == "drop":
            return None
        if action == "hash":
            assert self.salt is not None   # parse_pii requires a salt for hash
            return hash_value(value, self.salt)
        # mask: a URI keeps its host (useful for routing questions), loses its user part
        if uri_field or _USER_AT_HOST.search(value) or _TEL.search(value):
            return _mask_uris(value)
        return mask_number(value)

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document with the policy applied; `doc` itself is left unchanged."""
        if self.keeps_all or not isinstance(doc.get("call"), dict):
            return doc
        call = dict(doc["call"])
        call["from"] = self._apply(self.from_, call.get("from"), uri_field=False)
        call["to"] = self._apply(self.to, call.get("to"), uri_field=False)
        for key in URI_FIELDS:
            value = call.get(key)
            if isinstance(value, str) and (_USER_AT_HOST.search(value) or _TEL.search(value)):
                call[key] = self._apply(self.uris, value, uri_field=True)
        out = dict(doc)
        out["call"] = call
        return out


def parse_pii(sec: Section) -> PiiPolicy:
    """`pii: {from: mask, to: hash, uris: keep, salt: ${PII_SALT}}` (or `salt_file:`)."""
    policy = PiiPolicy(
        from_=sec.str("from", "keep", choices=ACTIONS),
        to=sec.str("to", "keep", choices=ACTIONS),
        uris=sec.str("uris", "keep", choices=ACTIONS),
        salt=sec.secret("salt", required=False),
    )
    if "hash" in (policy.from_, policy.to, policy.uris) and policy.salt is None:
        raise sec.error("salt", "hashing needs a salt",
                        fix="add `salt: ${PII_SALT}` (a long random value kept secret) or `salt_file:`")
    sec.finish()
    return policy
