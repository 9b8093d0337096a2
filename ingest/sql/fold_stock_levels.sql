-- Fold the batch's ledger changes (ledger_changes: site_id, sku, ts, delta, ledger_rows; a
-- removed row comes negated, with ledger_rows -1) into stock_levels: a change moves the stock
-- when it is later than the key's count (inventory.sql's rule). Runs after every ledger write
-- of the batch and before fold_stock_recounts.sql, which sets re-counted keys from the ledger.
INSERT INTO stock_levels
SELECT ch.site_id, ch.sku, NULL,
    coalesce(sum(ch.delta) FILTER (WHERE l.count_ts IS NULL OR ch.ts > l.count_ts), 0),
    sum(ch.ledger_rows)
FROM ledger_changes AS ch
LEFT JOIN stock_levels AS l USING (site_id, sku)
GROUP BY ch.site_id, ch.sku
ON CONFLICT (site_id, sku) DO UPDATE SET
    on_hand = stock_levels.on_hand + excluded.on_hand,
    ledger_rows = stock_levels.ledger_rows + excluded.ledger_rows;

-- A key left without a count or ledger rows is not stocked any more
-- (inventory.sql lists it no more).
DELETE FROM stock_levels WHERE count_ts IS NULL AND ledger_rows = 0;
