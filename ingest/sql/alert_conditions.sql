-- The conditions of the alert rules that hold at $now, one row per rule and subject: what the
-- worker's alert engine (ingest/alerts.py) compares with the open alerts. The engine turns the
-- parts (place, carrier_name, at, code, note, ...) into the message and picks the severity; the
-- dead-letter rate is measured by the engine itself, not here. {delivery_status} and
-- {days_of_supply} are the definitions the dashboard uses (delivery_status.sql,
-- days_of_supply.sql), so an alert and the dashboard never disagree.
WITH tol AS (
    SELECT "value"::DOUBLE AS minutes FROM settings WHERE name = 'on_time_tolerance_minutes'
),
sh AS MATERIALIZED (
    SELECT sh.*, {delivery_status} AS delivery_status, tol.minutes AS tolerance,
        d.name AS destination_name, o.name AS origin_name, c.name AS carrier_name
    FROM shipments_now AS sh CROSS JOIN tol
    LEFT JOIN ref_sites AS d ON d.site_id = sh.destination_site_id
    LEFT JOIN ref_sites AS o ON o.site_id = sh.origin_site_id
    LEFT JOIN ref_carriers AS c ON c.carrier_id = sh.carrier_id
    WHERE sh.status IN ('PLANNED', 'IN_TRANSIT', 'ARRIVED')
),
shipment_conditions AS (
    SELECT delivery_status AS rule, delay_minutes AS "value", tolerance AS threshold,
        NULL::VARCHAR AS detail, eta AS "at", NULL::VARCHAR AS code, NULL::VARCHAR AS note, *
        EXCLUDE (delivery_status)
    FROM sh
    WHERE (delivery_status = 'late' AND $late_on) OR (delivery_status = 'at_risk' AND $at_risk_on)
    UNION ALL BY NAME
    SELECT 'critical_exception' AS rule, last_exception_delay_minutes::DOUBLE AS "value",
        NULL::DOUBLE AS threshold,
        strftime(last_exception_at, '%Y-%m-%dT%H:%M:%S.%fZ') || ' ' || last_exception_code
            AS detail,
        last_exception_at AS "at", last_exception_code AS code,
        last_exception_message AS note, * EXCLUDE (delivery_status)
    FROM sh
    WHERE $critical_exception_on AND last_exception_severity = 'critical' AND arrived_at IS NULL
        AND minutes_between($now, last_exception_at) <= $critical_exception_max_age_minutes
    UNION ALL BY NAME
    SELECT 'stale_tracker' AS rule,
        minutes_between($now, coalesce(last_position_at, departed_at)) AS "value",
        $stale_tracker_after_minutes AS threshold, NULL::VARCHAR AS detail,
        coalesce(last_position_at, departed_at) AS "at", NULL::VARCHAR AS code,
        NULL::VARCHAR AS note, * EXCLUDE (delivery_status)
    FROM sh
    WHERE $stale_tracker_on AND status = 'IN_TRANSIT'
        AND minutes_between($now, coalesce(last_position_at, departed_at))
            > $stale_tracker_after_minutes
),
cover AS (
    SELECT * FROM ({days_of_supply})
    WHERE $low_days_of_supply_on AND days_of_supply < $low_days_of_supply_threshold_days
        AND sales_window_days >= $low_days_of_supply_min_history_days
)
SELECT rule, 'shipment' AS subject_type, shipment_id AS subject_id, shipment_id,
    NULL::VARCHAR AS site_id, NULL::VARCHAR AS sku, carrier_id, origin_site_id,
    destination_site_id, "value", threshold, detail, status,
    coalesce(destination_name, destination_site_id) AS place,
    coalesce(origin_name, origin_site_id) AS origin_place,
    coalesce(carrier_name, carrier_id) AS carrier_name, "at", code, note,
    NULL::BIGINT AS on_hand, NULL::BIGINT AS in_transit, NULL::DOUBLE AS daily_sales
FROM shipment_conditions
UNION ALL
SELECT 'low_days_of_supply', 'site_sku', c.site_id || '/' || c.sku, NULL, c.site_id, c.sku,
    NULL, NULL, NULL, c.days_of_supply, $low_days_of_supply_threshold_days, NULL, NULL,
    coalesce(s.name, c.site_id), NULL, NULL, NULL, NULL, NULL,
    c.on_hand, c.in_transit, c.daily_sales
FROM cover AS c LEFT JOIN ref_sites AS s USING (site_id)
