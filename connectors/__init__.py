"""Sources (AMI, ESL) and sinks (log, webhook with its outbox): the edges of the pipeline."""
