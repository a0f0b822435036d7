"""Shared test settings, and the brokers several test modules share (session fixtures live here).
Area-specific helpers live beside their tests."""

import pytest
import trustme
from broker_support import Mosquitto, RabbitMQ


@pytest.fixture(scope="session")
def broker_certs():
    """A CA and a certificate for 127.0.0.1/localhost, for the brokers' TLS listeners."""
    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory, broker_certs):
    """One RabbitMQ for the whole session: it takes seconds to start."""
    server = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"), tls=broker_certs)
    try:
        yield server.start()
    finally:
        server.stop()
        server.stop_epmd()


@pytest.fixture()
def mosquitto(tmp_path, broker_certs):
    """A mosquitto per test: it starts in milliseconds, and tests stop and restart it."""
    server = Mosquitto(tmp_path / "mosquitto", tls=broker_certs)
    try:
        yield server.start()
    finally:
        server.stop()
