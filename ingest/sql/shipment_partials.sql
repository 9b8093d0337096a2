-- Partial state per shipment from a set of its events. Every column is an order-free aggregate
-- (min, max, sum, or the value at the greatest (occurred_at, event_id) key), so the partial of
-- a union of event sets equals the merge of their partials (merge_shipment_state.sql).
SELECT
    shipment_id,
    min(occurred_at) AS first_event_at,
    max(occurred_at) AS last_event_at,
    count(*) AS event_count,
    max({'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.created') AS plan_key,
    arg_max({
        'origin_site_id': origin_site_id, 'destination_site_id': destination_site_id,
        'carrier_id': carrier_id, 'mode': mode,
        'planned_departure': planned_departure, 'planned_arrival': planned_arrival,
        'lines': lines}, {'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.created') AS plan,
    min(occurred_at) FILTER (WHERE event_type = 'shipment.departed') AS departed_at,
    min(occurred_at) FILTER (WHERE event_type = 'shipment.arrived') AS arrived_first_at,
    min(occurred_at) FILTER (WHERE event_type = 'shipment.delivered') AS delivered_first_at,
    max({'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.delivered') AS delivered_key,
    arg_max({'lines': lines, 'damaged_quantity': damaged_quantity},
            {'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.delivered') AS delivered,
    min(occurred_at) FILTER (WHERE event_type = 'shipment.cancelled') AS cancelled_at,
    max({'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.eta_updated') AS eta_key,
    arg_max({'eta': eta, 'reason': reason}, {'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.eta_updated') AS eta_update,
    max({'ts': occurred_at, 'id': event_id}) FILTER (WHERE lat IS NOT NULL) AS position_key,
    arg_max({'lat': lat, 'lon': lon, 'speed_kmh': speed_kmh, 'heading_deg': heading_deg},
            {'ts': occurred_at, 'id': event_id})
        FILTER (WHERE lat IS NOT NULL) AS "position",
    max({'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.exception') AS exception_key,
    arg_max({'code': code, 'severity': severity, 'message': message,
             'estimated_delay_minutes': estimated_delay_minutes},
            {'ts': occurred_at, 'id': event_id})
        FILTER (WHERE event_type = 'shipment.exception') AS last_exception,
    count(*) FILTER (WHERE event_type = 'shipment.exception') AS exception_count
FROM {events}
WHERE shipment_id IS NOT NULL
GROUP BY shipment_id
