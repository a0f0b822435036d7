"""TLS for the daemon's own connections (AMI, webhooks, brokers): one way to build the client
context, and one warning when a user turns verification off."""

from __future__ import annotations

import logging
import ssl


def client_context(ca_file: str | None, verify: bool = True) -> ssl.SSLContext:
    """A client context trusting `ca_file` (None: the system's trust store); with `verify`
    off, any certificate and host name is accepted."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def warn_unverified(log: logging.Logger, what: str, carried: str = "the records") -> None:
    """The line a connection logs when it opens with `tls.verify: false`."""
    log.warning("%s: TLS certificate verification is off (tls.verify: false); anyone on the path can read "
                "and alter %s", what, carried)
