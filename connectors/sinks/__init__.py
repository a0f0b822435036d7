"""Sinks: where records go (JSON Lines and console log, webhooks, MQTT, AMQP).

The networked sinks deliver through the durable outbox in `connectors/delivery`."""
