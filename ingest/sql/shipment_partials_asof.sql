-- Partial state per shipment from its events up to `as_of`, without reading all of history.
-- Every folded event is older than every event waiting in future_events (the fold takes all
-- that are due), so a shipment's row of shipment_state is its partial as of any time at or
-- after its last folded event, merged with its waiting events up to `as_of` if any. Only
-- shipments with folded events on both sides of `as_of` ("straddling") are recomputed from
-- events; their first event is at most the look-back window before `as_of` (the longest first-to-last span
-- of any shipment, kept by the worker), which lets the scan skip older row groups.
WITH straddling AS (
    SELECT shipment_id FROM shipment_state
    WHERE last_event_at > as_of AND first_event_at <= as_of
), waiting AS (
    SELECT * FROM future_events
    WHERE occurred_at <= as_of AND shipment_id IS NOT NULL
      AND shipment_id NOT IN (SELECT shipment_id FROM straddling)
), settled AS (
    SELECT * FROM shipment_state
    WHERE last_event_at <= as_of AND shipment_id NOT IN (SELECT shipment_id FROM straddling)
)
SELECT * FROM settled WHERE shipment_id NOT IN (SELECT shipment_id FROM waiting)
UNION ALL BY NAME
{waiting_merged}
UNION ALL BY NAME
{straddling_recomputed}
