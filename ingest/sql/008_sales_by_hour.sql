-- Migration 8: tires sold (adjustments with reason 'sold') per site, SKU and hour, so days
-- of supply sums about one row per key and hour of its window instead of every sale in it (at
-- 10M events, 320k ledger rows: two thirds of days_of_supply.sql's time once stock_levels had
-- taken the on-hand sums). `sales` counts the adjustments, `sold` their tires (-delta).
CREATE TABLE stock_sales_by_hour (
    site_id VARCHAR NOT NULL,
    sku VARCHAR NOT NULL,
    "hour" BIGINT NOT NULL,
    sales BIGINT NOT NULL,
    sold BIGINT NOT NULL,
    PRIMARY KEY (site_id, sku, "hour")
);

INSERT INTO stock_sales_by_hour
SELECT site_id, sku, epoch_hour(ts), count(*), -sum(delta)
FROM stock_changes
WHERE kind = 'adjustment' AND reason = 'sold'
GROUP BY ALL;
