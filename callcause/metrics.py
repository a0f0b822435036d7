"""Prometheus metrics of the daemon, named once here so every module counts the same way.

Names follow Prometheus conventions: `callcause_` prefix, `_total` counters, seconds.
They live in the default registry of the official client; `/metrics` serves it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("callcause_records_total", "Cause records produced, by source and category",
                  ["source", "category"])
RECORDS_SIP_CLASS = Counter("callcause_records_sip_class_total",
                            "Cause records by SIP response class of the final code (none when absent)",
                            ["source", "sip_class"])
RECORDS_Q850 = Counter("callcause_records_q850_cause_total", "Cause records by Q.850 cause value",
                       ["source", "q850_cause"])
SOURCE_UP = Gauge("callcause_source_up", "1 while the source is connected and logged in", ["source"])
SOURCE_RECONNECTS = Counter("callcause_source_reconnects_total", "Reconnection attempts per source",
                            ["source"])
SOURCE_EVENTS = Counter("callcause_source_events_total", "Events read from the PBX", ["source"])
MALFORMED = Counter("callcause_malformed_input_total", "Input that could not be used, by kind",
                    ["source", "kind"])
LEGS_EVICTED = Counter("callcause_legs_evicted_total",
                       "Unfinished call legs dropped from memory after their TTL", ["source"])
HANDOFF_OVERFLOW = Counter("callcause_handoff_overflow_total",
                           "Events that waited because the hand-off queue to the pipeline was full",
                           ["source"])
LOCALE_FALLBACK = Counter("callcause_locale_fallback_total",
                          "Texts served in English because the asked locale lacks them", ["lang"])
EVENT_TO_RECORD = Histogram("callcause_event_to_record_seconds",
                            "Time from reading a leg's final event to writing its record",
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
SINK_WRITES = Counter("callcause_sink_writes_total", "Records written per sink and result",
                      ["sink", "result"])
WEBHOOK_DELIVERIES = Counter("callcause_webhook_deliveries_total",
                             "Webhook delivery attempts by endpoint and result "
                             "(delivered, failed, retried, dead_lettered)", ["endpoint", "result"])
BROKER_DELIVERIES = Counter("callcause_broker_deliveries_total",
                            "Broker (MQTT, AMQP) delivery attempts by kind, endpoint and result "
                            "(delivered, failed, retried, dead_lettered)", ["kind", "endpoint", "result"])
OUTBOX_DEPTH = Gauge("callcause_outbox_depth", "Records waiting in the outbox", ["endpoint"])
OUTBOX_OLDEST_AGE = Gauge("callcause_outbox_oldest_age_seconds",
                          "Age of the oldest record waiting in the outbox", ["endpoint"])
RECORDS_SET_ASIDE = Counter("callcause_records_set_aside_total",
                            "Records that can never be written (a deterministic error), set aside so "
                            "later ones flow; by sink, or translator when no record could be built",
                            ["sink"])
SOURCE_RESTARTS = Counter("callcause_source_restarts_total",
                          "Source tasks that ended unexpectedly and were restarted by the supervisor",
                          ["source"])
OVERRIDE_RELOADS = Counter("callcause_override_reloads_total", "Reloads of the overrides file by result",
                           ["result"])
# Trunk health (callcause.trunks). The per-leg families (callcause_trunk_legs_total,
# callcause_trunk_answered_total, callcause_trunk_seer_legs_total, callcause_trunk_pdd_seconds,
# callcause_trunk_talk_seconds) are counted as plain numbers on the hot path and exported by the
# collector in callcause/trunks/exporter.py. Labels are bounded: trunks beyond trunks.max_groups
# count as trunk "other"; categories and NER classes are fixed vocabularies.
TRUNK_GROUPS = Gauge("callcause_trunk_groups", "Trunk groups held in memory (at most trunks.max_groups + 1)")
TRUNK_OVERFLOW = Counter("callcause_trunk_overflow_legs_total",
                         "Legs counted in the 'other' trunk group because trunks.max_groups was reached")
ALERT_FIRING = Gauge("callcause_alert_firing", "1 while a trunk alert rule fires for the group",
                     ["rule", "source", "trunk"])
ALERT_EVENTS = Counter("callcause_alert_events_total", "Trunk alert events by rule and state", ["rule", "state"])
