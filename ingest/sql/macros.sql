-- Scalar rules of the contract, shared by the live views and the as-of table macros.

CREATE OR REPLACE MACRO effective_departure(departed_at, arrived_first_at, delivered_first_at) AS
    coalesce(departed_at, arrived_first_at, delivered_first_at);

CREATE OR REPLACE MACRO shipment_status(delivered_first_at, cancelled_at, arrived_first_at,
                                        departed_at, plan_key) AS
    CASE WHEN delivered_first_at IS NOT NULL THEN 'DELIVERED'
         WHEN cancelled_at IS NOT NULL THEN 'CANCELLED'
         WHEN arrived_first_at IS NOT NULL THEN 'ARRIVED'
         WHEN departed_at IS NOT NULL THEN 'IN_TRANSIT'
         WHEN plan_key IS NOT NULL THEN 'PLANNED'
    END;

CREATE OR REPLACE MACRO minutes_between(later, earlier) AS
    (epoch_us(later) - epoch_us(earlier)) / 60000000.0;

CREATE OR REPLACE MACRO line_total(lines) AS
    coalesce(list_sum(list_transform(lines, lambda l: l.quantity)), 0)::BIGINT;

-- Stock movements of one shipment (site, sku, ts, delta, kind), from its partial state.
CREATE OR REPLACE MACRO shipment_movements(plan, departed_at, arrived_first_at,
                                           delivered_first_at, delivered, cancelled_at) AS
    CASE WHEN plan IS NOT NULL THEN list_concat(
        CASE WHEN effective_departure(departed_at, arrived_first_at, delivered_first_at) IS NOT NULL
             THEN list_transform(plan.lines, lambda l: {
                 'site_id': plan.origin_site_id, 'sku': l.sku,
                 'ts': effective_departure(departed_at, arrived_first_at, delivered_first_at),
                 'delta': -l.quantity, 'kind': 'departure'}) END,
        CASE WHEN delivered_first_at IS NOT NULL
             THEN list_transform(delivered.lines, lambda l: {
                 'site_id': plan.destination_site_id, 'sku': l.sku,
                 'ts': delivered_first_at, 'delta': l.quantity, 'kind': 'delivery'}) END,
        CASE WHEN cancelled_at IS NOT NULL AND delivered_first_at IS NULL
                  AND effective_departure(departed_at, arrived_first_at, NULL) IS NOT NULL
             THEN list_transform(plan.lines, lambda l: {
                 'site_id': plan.origin_site_id, 'sku': l.sku,
                 'ts': greatest(effective_departure(departed_at, arrived_first_at, NULL),
                                cancelled_at),
                 'delta': l.quantity, 'kind': 'return'}) END)
    END;

-- OTIF's in-full test: every planned SKU (lines summed per SKU) received in good condition at
-- least as planned. Delivered lines equal to the plan's (the common case; the contract makes a
-- plan's lines non-empty with a SKU and a quantity each) are in full without the per-SKU sums.
CREATE OR REPLACE MACRO lines_in_full(planned_lines, delivered_lines) AS
    CASE WHEN delivered_lines = planned_lines AND len(planned_lines) > 0 THEN TRUE
    ELSE coalesce(list_bool_and(list_transform(
        list_distinct(list_transform(planned_lines, lambda l: l.sku)),
        lambda k: coalesce(list_sum(list_transform(
                      list_filter(delivered_lines, lambda d: d.sku = k), lambda d: d.quantity)), 0)
                  >= list_sum(list_transform(
                      list_filter(planned_lines, lambda p: p.sku = k), lambda p: p.quantity)))),
    FALSE) END;

-- Whole hours since the epoch (UTC, floored) of an instant, and the instant an hour starts:
-- the buckets of stock_sales_by_hour.
CREATE OR REPLACE MACRO epoch_hour(ts) AS floor(epoch_us(ts) / 3600000000)::BIGINT;

CREATE OR REPLACE MACRO hour_start(hour) AS to_timestamp(hour * 3600);
