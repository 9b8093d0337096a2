-- Fold the batch's inventory events into the live stock tables.
INSERT INTO stock_counts
SELECT site_id, sku,
       max({'ts': occurred_at, 'id': event_id}) AS count_key,
       arg_max(on_hand, {'ts': occurred_at, 'id': event_id}) AS on_hand
FROM apply_events
WHERE event_type = 'inventory.counted'
GROUP BY site_id, sku
ON CONFLICT (site_id, sku) DO UPDATE SET
    on_hand = CASE WHEN excluded.count_key > stock_counts.count_key
                   THEN excluded.on_hand ELSE stock_counts.on_hand END,
    count_key = greatest(stock_counts.count_key, excluded.count_key);

INSERT INTO stock_changes
SELECT site_id, sku, occurred_at, delta, 'adjustment', event_id
FROM apply_events
WHERE event_type = 'inventory.adjusted';

INSERT INTO site_state
SELECT site_id, max(occurred_at) FROM apply_events WHERE site_id IS NOT NULL GROUP BY site_id
ON CONFLICT (site_id) DO UPDATE SET
    last_event_at = greatest(site_state.last_event_at, excluded.last_event_at);
