-- The batch's sales (adjustments with reason 'sold', as they enter the stock ledger) added to
-- their hours in stock_sales_by_hour.
INSERT INTO stock_sales_by_hour
SELECT site_id, sku, epoch_hour(occurred_at), count(*), -sum(delta)
FROM apply_events
WHERE event_type = 'inventory.adjusted' AND reason = 'sold'
GROUP BY ALL
ON CONFLICT (site_id, sku, "hour") DO UPDATE SET
    sales = stock_sales_by_hour.sales + excluded.sales,
    sold = stock_sales_by_hour.sold + excluded.sold;
