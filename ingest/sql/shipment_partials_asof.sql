-- Partial state per shipment from its events up to `as_of`, without reading all of history.
-- Every folded event is older than every event waiting in future_events (the fold takes all
-- that are due), so a shipment's row of shipment_state is its partial as of any time at or
-- after its last folded event, merged with its waiting events up to `as_of` if any.
-- Shipments with folded events on both sides of `as_of` ("straddling") need their events up
-- to `as_of`:
-- - "covered" ones from the snapshot at {snapshot_at}, the last snapshot instant before
--   `as_of` (009_shipment_snapshots.sql): its row, which holds their events up to that instant
--   as stored when it was taken, merged with their events after the instant and those before
--   it stored later (ingested_at, which only grows, past taken_at). Both scans have bounds
--   known when the query is planned, so they fetch columns for few rows. A shipment without a
--   row is covered when its first event is after the instant (none before it, not even one
--   still waiting).
-- - the rest ("uncovered": no snapshot there, or a shipment it left out as finished) are
--   recomputed from their events; their first event is at most the look-back window before
--   `as_of` (the longest first-to-last span of any shipment, kept by the worker), which lets
--   the scan skip older row groups.
WITH straddling AS (
    SELECT shipment_id, first_event_at FROM shipment_state
    WHERE last_event_at > as_of AND first_event_at <= as_of
), snapshot AS (
    SELECT taken_at FROM shipment_snapshot_times WHERE snapshot_at = {snapshot_at}
), snapped AS (
    SELECT * EXCLUDE (snapshot_at) FROM shipment_snapshots
    WHERE snapshot_at = {snapshot_at} AND shipment_id IN (SELECT shipment_id FROM straddling)
), covered AS (
    SELECT shipment_id FROM straddling
    WHERE shipment_id IN (SELECT shipment_id FROM snapped)
       OR (first_event_at > {snapshot_at}
           AND shipment_id NOT IN (
               SELECT shipment_id FROM future_events
               WHERE shipment_id IS NOT NULL AND occurred_at <= {snapshot_at}))
), uncovered AS (
    SELECT shipment_id FROM straddling
    WHERE shipment_id NOT IN (SELECT shipment_id FROM covered)
), waiting AS (
    SELECT * FROM future_events
    WHERE occurred_at <= as_of AND shipment_id IS NOT NULL
      AND shipment_id NOT IN (SELECT shipment_id FROM straddling)
), settled AS NOT MATERIALIZED (
    SELECT * FROM shipment_state
    WHERE last_event_at <= as_of AND shipment_id NOT IN (SELECT shipment_id FROM straddling)
)
SELECT * FROM settled WHERE shipment_id NOT IN (SELECT shipment_id FROM waiting)
UNION ALL BY NAME
{waiting_merged}
UNION ALL BY NAME
{covered_merged}
UNION ALL BY NAME
{uncovered_recomputed}
