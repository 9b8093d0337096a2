-- Shipment rows of the contract from partial states {partials} at time {t}, with the on-time
-- tolerance {tolerance} in minutes. Columns after planned/delivered_quantity are extras.
-- {in_full}: OTIF's in-full test, stored with the live state, computed for a replay.
WITH base AS (
    SELECT
        p.*,
        shipment_status(p.delivered_first_at, p.cancelled_at, p.arrived_first_at,
                        p.departed_at, p.plan_key) AS status,
        coalesce(p.arrived_first_at, p.delivered_first_at) AS arrived_at,
        CASE WHEN p.eta_key IS NOT NULL AND (p.plan_key IS NULL OR p.eta_key.ts >= p.plan_key.ts)
             THEN p.eta_update.eta ELSE p.plan.planned_arrival END AS eta
    FROM {partials} AS p
), timed AS (
    SELECT
        *,
        CASE WHEN plan.planned_arrival IS NULL OR status = 'CANCELLED' THEN NULL
             WHEN arrived_at IS NOT NULL THEN minutes_between(arrived_at, plan.planned_arrival)
             ELSE greatest(minutes_between(greatest(eta, {t}), plan.planned_arrival), 0.0)
        END AS delay_minutes
    FROM base
)
SELECT
    shipment_id,
    status,
    plan.origin_site_id AS origin_site_id,
    plan.destination_site_id AS destination_site_id,
    plan.carrier_id AS carrier_id,
    plan.mode AS mode,
    plan.planned_departure AS planned_departure,
    plan.planned_arrival AS planned_arrival,
    departed_at,
    arrived_at,
    eta,
    "position".lat AS last_lat,
    "position".lon AS last_lon,
    position_key.ts AS last_position_at,
    delay_minutes,
    delay_minutes > {tolerance} AS is_late,
    CASE WHEN plan IS NOT NULL THEN line_total(plan.lines) END AS planned_quantity,
    CASE WHEN delivered_first_at IS NOT NULL THEN line_total(delivered.lines) END
        AS delivered_quantity,
    -- extras for the dashboard (not part of the contract's export columns)
    effective_departure(departed_at, arrived_first_at, delivered_first_at) AS effective_departure_at,
    delivered_first_at AS delivered_at,
    cancelled_at,
    delivered.damaged_quantity AS damaged_quantity,
    eta_update.reason AS eta_reason,
    "position".speed_kmh AS last_speed_kmh,
    "position".heading_deg AS last_heading_deg,
    last_exception.code AS last_exception_code,
    last_exception.severity AS last_exception_severity,
    last_exception.message AS last_exception_message,
    last_exception.estimated_delay_minutes AS last_exception_delay_minutes,
    exception_key.ts AS last_exception_at,
    exception_count,
    plan.lines AS planned_lines,
    delivered.lines AS delivered_lines,
    {in_full} AS in_full,
    first_event_at,
    last_event_at
FROM timed
