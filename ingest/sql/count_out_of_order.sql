-- Applied events older than the newest event applied before them for the same shipment or site:
-- from earlier batches (shipment_state / site_state) or earlier in this batch (Kafka position).
SELECT
    (SELECT count(*) FROM (
        SELECT a.occurred_at, s.last_event_at,
               max(a.occurred_at) OVER (
                   PARTITION BY a.shipment_id ORDER BY a.topic, a."partition", a."offset"
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_in_batch
        FROM apply_events AS a
        LEFT JOIN shipment_state AS s USING (shipment_id)
        WHERE a.shipment_id IS NOT NULL)
     WHERE occurred_at < greatest(previous_in_batch, last_event_at))
  + (SELECT count(*) FROM (
        SELECT a.occurred_at, s.last_event_at,
               max(a.occurred_at) OVER (
                   PARTITION BY a.site_id ORDER BY a.topic, a."partition", a."offset"
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_in_batch
        FROM apply_events AS a
        LEFT JOIN site_state AS s USING (site_id)
        WHERE a.site_id IS NOT NULL)
     WHERE occurred_at < greatest(previous_in_batch, last_event_at))
