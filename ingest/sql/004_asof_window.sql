-- Migration 4: as-of queries without reading all of history (shipment_partials_asof.sql).
-- Events waiting for their time keep their whole row, so they are read without scanning
-- events; and the longest span between a shipment's first and last folded event bounds how
-- far back an as-of query must look.
CREATE TABLE pending_events AS
SELECT * FROM events WHERE event_id IN (SELECT event_id FROM future_events);
DROP TABLE future_events;
ALTER TABLE pending_events RENAME TO future_events;

INSERT OR REPLACE INTO settings
SELECT 'shipment_span_seconds',
       coalesce(max(epoch(last_event_at) - epoch(first_event_at)), 0)::VARCHAR
FROM shipment_state;
