-- The batch's stock adjustments, as stock changes (store.adjustment_changes hands the same rows
-- to fold_stock_levels.sql).
INSERT INTO stock_changes (site_id, sku, ts, delta, kind, ref, reason)
SELECT site_id, sku, occurred_at, delta, 'adjustment', event_id, reason
FROM apply_events
WHERE event_type = 'inventory.adjusted';
