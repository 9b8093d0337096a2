-- Migration 1: the event store, the derived "now" state, Kafka positions, dead letters, metrics.

-- Every accepted event, both topics; event_id is unique across topics (the contract's dedup key).
CREATE TABLE events (
    event_id VARCHAR PRIMARY KEY,
    event_type VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    source VARCHAR,
    shipment_id VARCHAR,
    site_id VARCHAR,
    lat DOUBLE,
    lon DOUBLE,
    origin_site_id VARCHAR,
    destination_site_id VARCHAR,
    carrier_id VARCHAR,
    mode VARCHAR,
    planned_departure TIMESTAMPTZ,
    planned_arrival TIMESTAMPTZ,
    lines STRUCT(sku VARCHAR, quantity BIGINT)[],
    damaged_quantity BIGINT,
    speed_kmh DOUBLE,
    heading_deg DOUBLE,
    eta TIMESTAMPTZ,
    reason VARCHAR,
    code VARCHAR,
    severity VARCHAR,
    message VARCHAR,
    estimated_delay_minutes BIGINT,
    sku VARCHAR,
    on_hand BIGINT,
    delta BIGINT,
    topic VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);

-- Events whose occurred_at was in the future when they arrived (producer clock skew): kept in
-- events at once, folded into the "now" state only when their time comes, so the live state is
-- always the contract's state at T = now.
CREATE TABLE future_events (
    event_id VARCHAR PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL
);

-- Per-shipment partial state: a merge of aggregates that do not depend on arrival order.
-- One row per shipment, kept so by the fold (no index: rows are swapped, not updated).
CREATE TABLE shipment_state (
    shipment_id VARCHAR NOT NULL,
    first_event_at TIMESTAMPTZ,
    last_event_at TIMESTAMPTZ,
    event_count BIGINT,
    plan_key STRUCT(ts TIMESTAMPTZ, id VARCHAR),
    plan STRUCT(
        origin_site_id VARCHAR, destination_site_id VARCHAR, carrier_id VARCHAR, mode VARCHAR,
        planned_departure TIMESTAMPTZ, planned_arrival TIMESTAMPTZ,
        lines STRUCT(sku VARCHAR, quantity BIGINT)[]),
    departed_at TIMESTAMPTZ,
    arrived_first_at TIMESTAMPTZ,
    delivered_first_at TIMESTAMPTZ,
    delivered_key STRUCT(ts TIMESTAMPTZ, id VARCHAR),
    delivered STRUCT(lines STRUCT(sku VARCHAR, quantity BIGINT)[], damaged_quantity BIGINT),
    cancelled_at TIMESTAMPTZ,
    eta_key STRUCT(ts TIMESTAMPTZ, id VARCHAR),
    eta_update STRUCT(eta TIMESTAMPTZ, reason VARCHAR),
    position_key STRUCT(ts TIMESTAMPTZ, id VARCHAR),
    "position" STRUCT(lat DOUBLE, lon DOUBLE, speed_kmh DOUBLE, heading_deg DOUBLE),
    exception_key STRUCT(ts TIMESTAMPTZ, id VARCHAR),
    last_exception STRUCT(code VARCHAR, severity VARCHAR, message VARCHAR, estimated_delay_minutes BIGINT),
    exception_count BIGINT
);

-- Latest cycle count per site and SKU.
CREATE TABLE stock_counts (
    site_id VARCHAR NOT NULL,
    sku VARCHAR NOT NULL,
    count_key STRUCT(ts TIMESTAMPTZ, id VARCHAR) NOT NULL,
    on_hand BIGINT NOT NULL,
    PRIMARY KEY (site_id, sku)
);

-- Stock ledger: adjustments (ref = event_id) and shipment movements (ref = shipment_id, rebuilt
-- from shipment_state whenever the shipment changes).
CREATE TABLE stock_changes (
    site_id VARCHAR NOT NULL,
    sku VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    delta BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    ref VARCHAR NOT NULL
);

CREATE TABLE site_state (
    site_id VARCHAR PRIMARY KEY,
    last_event_at TIMESTAMPTZ
);

-- Next offset to read per partition, written in the same transaction as the events it covers.
CREATE TABLE kafka_offsets (
    topic VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    high_watermark BIGINT,
    at_end_since TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, "partition")
);

CREATE TABLE dead_letters (
    topic VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    "key" BLOB,
    "value" BLOB
);

-- References to sites, SKUs or carriers not in the reference data: accepted, reported here.
CREATE TABLE data_quality_issues (
    event_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    "value" VARCHAR NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL
);

-- One row of counters for the whole worker, updated with every batch.
CREATE TABLE ingest_stats (
    id INTEGER PRIMARY KEY,
    messages BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    out_of_order BIGINT NOT NULL,
    unknown_references BIGINT NOT NULL,
    batches BIGINT NOT NULL,
    last_event_at TIMESTAMPTZ,
    last_batch_at TIMESTAMPTZ,
    events_per_s DOUBLE,
    started_at TIMESTAMPTZ
);
INSERT INTO ingest_stats VALUES (1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL);

-- Worker settings that readers need (the on-time tolerance used by the live views).
CREATE TABLE settings (
    name VARCHAR PRIMARY KEY,
    "value" VARCHAR NOT NULL
);

-- Reference network, replaced from data/*.csv each time the worker starts.
CREATE TABLE ref_sites (site_id VARCHAR);
CREATE TABLE ref_skus (sku VARCHAR);
CREATE TABLE ref_carriers (carrier_id VARCHAR);
CREATE TABLE ref_lanes (lane_id VARCHAR);
