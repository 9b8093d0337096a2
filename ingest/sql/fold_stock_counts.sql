-- Fold the batch's stock counts into stock_counts: the latest count per site and SKU wins.
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
