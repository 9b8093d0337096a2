-- The shipments of the batch whose stock movements changed (most events, the positions,
-- change none): their movements before, as the ledger holds them, and after (merged_state).
CREATE OR REPLACE TEMP TABLE moved AS
SELECT shipment_id, movements_before, movements
FROM (
    SELECT shipment_id, movements_before,
        shipment_movements(plan, departed_at, arrived_first_at, delivered_first_at, delivered,
                           cancelled_at) AS movements
    FROM merged_state
)
WHERE movements IS DISTINCT FROM movements_before;

-- Their rows of the ledger rewritten (run only when there are any: the delete scans it).
DELETE FROM stock_changes
WHERE kind <> 'adjustment' AND ref IN (SELECT shipment_id FROM moved);

INSERT INTO stock_changes (site_id, sku, ts, delta, kind, ref)
SELECT m.site_id, m.sku, m.ts, m.delta, m.kind, shipment_id
FROM (SELECT shipment_id, unnest(movements) AS m FROM moved);

-- The ledger's changes, for fold_stock_levels.sql: rows removed negated, rows added.
SELECT m.site_id, m.sku, m.ts, -m.delta AS delta, -1 AS ledger_rows
FROM (SELECT unnest(movements_before) AS m FROM moved)
UNION ALL
SELECT m.site_id, m.sku, m.ts, m.delta, 1
FROM (SELECT unnest(movements) AS m FROM moved);
