-- The batch's stock adjustments, as stock changes.
INSERT INTO stock_changes
SELECT site_id, sku, occurred_at, delta, 'adjustment', event_id
FROM apply_events
WHERE event_type = 'inventory.adjusted';
