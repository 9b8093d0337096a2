-- Fold the batch into stock_levels (inventory.sql's rule: the latest count plus every change
-- after it), after every ledger and count write of the batch, in one statement (each costs
-- milliseconds on a big store):
-- - a key counted in the batch is set anew: its latest count (stock_counts) plus the ledger's
--   changes after it. The ledger is read from the earliest of those counts on, which its zone
--   maps mostly skip: counts arrive about as they happen;
-- - any other key moves by the batch's ledger changes (ledger_changes: site_id, sku, ts, delta,
--   ledger_rows; a removed row comes negated, with ledger_rows -1) later than its count.
INSERT INTO stock_levels
WITH recounted AS (
    SELECT c.site_id, c.sku, c.count_key.ts AS count_ts, c.on_hand
    FROM stock_counts AS c
    SEMI JOIN apply_events AS a
        ON a.event_type = 'inventory.counted' AND a.site_id = c.site_id AND a.sku = c.sku
),
recount AS (
    SELECT r.site_id, r.sku, r.count_ts, r.on_hand + coalesce(sum(ch.delta), 0) AS on_hand
    FROM recounted AS r
    LEFT JOIN (
        SELECT site_id, sku, ts, delta FROM stock_changes
        WHERE ts > (SELECT min(count_ts) FROM recounted)
    ) AS ch ON ch.site_id = r.site_id AND ch.sku = r.sku AND ch.ts > r.count_ts
    GROUP BY r.site_id, r.sku, r.count_ts, r.on_hand
),
changed AS (
    SELECT ch.site_id, ch.sku,
        coalesce(sum(ch.delta) FILTER (WHERE l.count_ts IS NULL OR ch.ts > l.count_ts), 0)
            AS delta,
        sum(ch.ledger_rows) AS ledger_rows
    FROM ledger_changes AS ch
    LEFT JOIN stock_levels AS l USING (site_id, sku)
    GROUP BY ch.site_id, ch.sku
)
-- count_ts is set exactly for the keys counted in the batch (a count always has one).
SELECT coalesce(r.site_id, c.site_id), coalesce(r.sku, c.sku), r.count_ts,
    coalesce(r.on_hand, c.delta), coalesce(c.ledger_rows, 0)
FROM recount AS r
FULL OUTER JOIN changed AS c USING (site_id, sku)
ON CONFLICT (site_id, sku) DO UPDATE SET
    count_ts = coalesce(excluded.count_ts, stock_levels.count_ts),
    on_hand = CASE WHEN excluded.count_ts IS NOT NULL THEN excluded.on_hand
                   ELSE stock_levels.on_hand + excluded.on_hand END,
    ledger_rows = stock_levels.ledger_rows + excluded.ledger_rows;

-- A key left without a count or ledger rows is not stocked any more (inventory.sql lists it no
-- more). Run only when the batch removed ledger rows.
DELETE FROM stock_levels WHERE count_ts IS NULL AND ledger_rows = 0;
