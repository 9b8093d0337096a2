-- Migration 3: alerts raised by the worker's rules (ingest/alerts.py), their published events
-- and the webhook's delivery counters. Written only by the worker; read by the dashboard.

-- One row per alert: its current state (the history is in alert_history and on the topic).
CREATE TABLE alerts (
    alert_id VARCHAR PRIMARY KEY,
    rule VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    subject_type VARCHAR NOT NULL,
    subject_id VARCHAR NOT NULL,
    shipment_id VARCHAR,
    site_id VARCHAR,
    sku VARCHAR,
    carrier_id VARCHAR,
    origin_site_id VARCHAR,
    destination_site_id VARCHAR,
    message VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    "value" DOUBLE,
    threshold DOUBLE,
    revision INTEGER NOT NULL,
    acked_by VARCHAR,
    acked_at TIMESTAMPTZ,
    ack_note VARCHAR,
    -- what the condition is about besides its value (a critical exception: its time and code);
    -- a change updates the alert
    detail VARCHAR
);

-- Every alert event, in the form published to the alerts topic. published_at stays null until
-- the broker confirmed the delivery: the worker publishes what is still null (an outbox), so
-- the topic receives every event at least once even across a crash.
CREATE TABLE alert_history (
    event_id VARCHAR PRIMARY KEY,
    event_type VARCHAR NOT NULL,
    alert_id VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    payload JSON NOT NULL,
    published_at TIMESTAMPTZ
);

-- The webhook's counters since the worker started (one row; url null without a webhook).
CREATE TABLE alert_delivery (
    id INTEGER PRIMARY KEY,
    url VARCHAR,
    queued BIGINT NOT NULL,
    delivered BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    dropped BIGINT NOT NULL,
    last_error VARCHAR,
    last_error_at TIMESTAMPTZ,
    last_delivered_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ
);
INSERT INTO alert_delivery VALUES (1, NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL);
