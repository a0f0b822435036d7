"""Sources (AMI, ESL) and sinks (log, webhook, MQTT, AMQP, and the outbox they deliver through).

The edges of the pipeline."""
