-- One partial state per shipment from several partial rows of it ({partials}): the same merge
-- as merge_shipment_state.sql, written as an aggregate.
SELECT
    shipment_id,
    min(first_event_at) AS first_event_at,
    max(last_event_at) AS last_event_at,
    sum(event_count)::BIGINT AS event_count,
    max(plan_key) AS plan_key,
    arg_max(plan, plan_key) AS plan,
    min(departed_at) AS departed_at,
    min(arrived_first_at) AS arrived_first_at,
    min(delivered_first_at) AS delivered_first_at,
    max(delivered_key) AS delivered_key,
    arg_max(delivered, delivered_key) AS delivered,
    min(cancelled_at) AS cancelled_at,
    max(eta_key) AS eta_key,
    arg_max(eta_update, eta_key) AS eta_update,
    max(position_key) AS position_key,
    arg_max("position", position_key) AS "position",
    max(exception_key) AS exception_key,
    arg_max(last_exception, exception_key) AS last_exception,
    sum(exception_count)::BIGINT AS exception_count
FROM ({partials})
GROUP BY shipment_id
