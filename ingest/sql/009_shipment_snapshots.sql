-- Migration 9: the shipments' partial state at fixed instants (every few minutes of event
-- time), so an as-of query for a moment merges the latest snapshot before it with the events
-- after it, instead of recomputing every shipment on the road from the look-back window of
-- events (at 10M events, 190,000 events grouped per replay). A snapshot holds the shipments
-- still open at its instant (shipment_partials_asof.sql reads it), as of `taken_at`: events
-- stored after that (a larger ingested_at) are read from the events table.
CREATE TABLE shipment_snapshot_times (
    snapshot_at TIMESTAMPTZ PRIMARY KEY,
    taken_at TIMESTAMPTZ NOT NULL,
    shipments BIGINT NOT NULL
);

CREATE TABLE shipment_snapshots AS
SELECT NULL::TIMESTAMPTZ AS snapshot_at, * EXCLUDE (in_full) FROM shipment_state LIMIT 0;
