-- The shipments' state at $at as 009_shipment_snapshots.sql keeps it: the shipments still open
-- then (neither delivered nor cancelled, an event within the day before). One left out that
-- turns out to go on is recomputed from its events by an as-of query.
INSERT INTO shipment_snapshots
SELECT $at, * EXCLUDE (in_full) FROM shipment_partials_asof($at)
WHERE delivered_first_at IS NULL AND cancelled_at IS NULL
  AND last_event_at > $at - INTERVAL 1 DAY;

INSERT INTO shipment_snapshot_times
SELECT $at, $taken_at, count(*) FROM shipment_snapshots WHERE snapshot_at = $at;
