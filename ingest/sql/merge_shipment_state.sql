-- Fold the batch's shipment partials into shipment_state: later keys win for "latest" values,
-- min/max for instants, sums for counts. Computed as whole rows, then swapped in (delete +
-- insert), which DuckDB does far faster than an upsert that updates nested columns in place.
-- `in_full` follows from the merged plan and delivery (macros.sql); `movements_before` are the
-- stock movements of the state replaced, as the ledger holds them (move_stock.sql).
CREATE OR REPLACE TEMP TABLE merged_state AS
SELECT
    b.shipment_id,
    least(s.first_event_at, b.first_event_at) AS first_event_at,
    greatest(s.last_event_at, b.last_event_at) AS last_event_at,
    coalesce(s.event_count, 0) + b.event_count AS event_count,
    greatest(s.plan_key, b.plan_key) AS plan_key,
    CASE WHEN s.plan_key IS NULL OR b.plan_key > s.plan_key
         THEN coalesce(b.plan, s.plan) ELSE s.plan END AS plan,
    least(s.departed_at, b.departed_at) AS departed_at,
    least(s.arrived_first_at, b.arrived_first_at) AS arrived_first_at,
    least(s.delivered_first_at, b.delivered_first_at) AS delivered_first_at,
    greatest(s.delivered_key, b.delivered_key) AS delivered_key,
    CASE WHEN s.delivered_key IS NULL OR b.delivered_key > s.delivered_key
         THEN coalesce(b.delivered, s.delivered) ELSE s.delivered END AS delivered,
    least(s.cancelled_at, b.cancelled_at) AS cancelled_at,
    greatest(s.eta_key, b.eta_key) AS eta_key,
    CASE WHEN s.eta_key IS NULL OR b.eta_key > s.eta_key
         THEN coalesce(b.eta_update, s.eta_update) ELSE s.eta_update END AS eta_update,
    greatest(s.position_key, b.position_key) AS position_key,
    CASE WHEN s.position_key IS NULL OR b.position_key > s.position_key
         THEN coalesce(b."position", s."position") ELSE s."position" END AS "position",
    greatest(s.exception_key, b.exception_key) AS exception_key,
    CASE WHEN s.exception_key IS NULL OR b.exception_key > s.exception_key
         THEN coalesce(b.last_exception, s.last_exception) ELSE s.last_exception END
        AS last_exception,
    coalesce(s.exception_count, 0) + b.exception_count AS exception_count,
    shipment_movements(s.plan, s.departed_at, s.arrived_first_at, s.delivered_first_at,
                       s.delivered, s.cancelled_at) AS movements_before
FROM batch_partials AS b
LEFT JOIN shipment_state AS s USING (shipment_id);

DELETE FROM shipment_state WHERE shipment_id IN (SELECT shipment_id FROM batch_partials);

INSERT INTO shipment_state BY NAME
SELECT * EXCLUDE (movements_before), lines_in_full(plan.lines, delivered.lines) AS in_full
FROM merged_state;
