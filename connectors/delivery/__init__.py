"""Delivery: the durable outbox and the dispatcher any networked sink hands its records to."""
