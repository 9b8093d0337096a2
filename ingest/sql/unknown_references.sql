-- References in the batch's new events to sites, SKUs or carriers absent from the reference data.
WITH refs AS (
    SELECT 'site' AS kind, site_id AS id FROM ref_sites
    UNION ALL SELECT 'sku', sku FROM ref_skus
    UNION ALL SELECT 'carrier', carrier_id FROM ref_carriers
), used AS (
    SELECT event_id, event_type, 'origin_site_id' AS field, 'site' AS kind, origin_site_id AS "value"
    FROM new_events WHERE origin_site_id IS NOT NULL
    UNION ALL SELECT event_id, event_type, 'destination_site_id', 'site', destination_site_id
    FROM new_events WHERE destination_site_id IS NOT NULL
    UNION ALL SELECT event_id, event_type, 'carrier_id', 'carrier', carrier_id
    FROM new_events WHERE carrier_id IS NOT NULL
    UNION ALL SELECT event_id, event_type, 'site_id', 'site', site_id
    FROM new_events WHERE site_id IS NOT NULL
    UNION ALL SELECT event_id, event_type, 'sku', 'sku', sku
    FROM new_events WHERE sku IS NOT NULL
    UNION ALL SELECT event_id, event_type, 'lines.sku', 'sku', line.sku
    FROM (SELECT event_id, event_type, unnest(lines) AS line FROM new_events WHERE lines IS NOT NULL)
)
SELECT DISTINCT u.event_id, u.event_type, u.field, u."value"
FROM used AS u
ANTI JOIN refs AS r ON r.kind = u.kind AND r.id = u."value"
