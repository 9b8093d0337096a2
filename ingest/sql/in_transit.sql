-- Tires on the road per origin, destination and SKU from partial states {partials}: planned
-- lines of shipments that have left (effective departure) and are neither delivered nor cancelled.
SELECT
    origin_site_id,
    destination_site_id,
    line.sku AS sku,
    sum(line.quantity)::BIGINT AS in_transit
FROM (
    SELECT plan.origin_site_id, plan.destination_site_id, unnest(plan.lines) AS line
    FROM {partials}
    WHERE plan IS NOT NULL
      AND effective_departure(departed_at, arrived_first_at, delivered_first_at) IS NOT NULL
      AND delivered_first_at IS NULL
      AND cancelled_at IS NULL
)
GROUP BY ALL
HAVING sum(line.quantity) > 0
