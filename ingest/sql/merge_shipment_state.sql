-- Fold the batch's shipment partials into shipment_state. Later keys win for "latest" values,
-- min/max for instants, sums for counts; the SET expressions all read the old row.
INSERT INTO shipment_state BY NAME
SELECT * FROM batch_partials
ON CONFLICT (shipment_id) DO UPDATE SET
    first_event_at = least(shipment_state.first_event_at, excluded.first_event_at),
    last_event_at = greatest(shipment_state.last_event_at, excluded.last_event_at),
    event_count = shipment_state.event_count + excluded.event_count,
    plan = CASE WHEN shipment_state.plan_key IS NULL OR excluded.plan_key > shipment_state.plan_key
                THEN coalesce(excluded.plan, shipment_state.plan) ELSE shipment_state.plan END,
    plan_key = greatest(shipment_state.plan_key, excluded.plan_key),
    departed_at = least(shipment_state.departed_at, excluded.departed_at),
    arrived_first_at = least(shipment_state.arrived_first_at, excluded.arrived_first_at),
    delivered_first_at = least(shipment_state.delivered_first_at, excluded.delivered_first_at),
    delivered = CASE WHEN shipment_state.delivered_key IS NULL
                       OR excluded.delivered_key > shipment_state.delivered_key
                     THEN coalesce(excluded.delivered, shipment_state.delivered)
                     ELSE shipment_state.delivered END,
    delivered_key = greatest(shipment_state.delivered_key, excluded.delivered_key),
    cancelled_at = least(shipment_state.cancelled_at, excluded.cancelled_at),
    eta_update = CASE WHEN shipment_state.eta_key IS NULL OR excluded.eta_key > shipment_state.eta_key
                      THEN coalesce(excluded.eta_update, shipment_state.eta_update)
                      ELSE shipment_state.eta_update END,
    eta_key = greatest(shipment_state.eta_key, excluded.eta_key),
    "position" = CASE WHEN shipment_state.position_key IS NULL
                        OR excluded.position_key > shipment_state.position_key
                      THEN coalesce(excluded."position", shipment_state."position")
                      ELSE shipment_state."position" END,
    position_key = greatest(shipment_state.position_key, excluded.position_key),
    last_exception = CASE WHEN shipment_state.exception_key IS NULL
                            OR excluded.exception_key > shipment_state.exception_key
                          THEN coalesce(excluded.last_exception, shipment_state.last_exception)
                          ELSE shipment_state.last_exception END,
    exception_key = greatest(shipment_state.exception_key, excluded.exception_key),
    exception_count = shipment_state.exception_count + excluded.exception_count
