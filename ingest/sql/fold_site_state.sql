-- The newest event time per site, for counting events that arrive out of order.
INSERT INTO site_state
SELECT site_id, max(occurred_at) FROM apply_events WHERE site_id IS NOT NULL GROUP BY site_id
ON CONFLICT (site_id) DO UPDATE SET
    last_event_at = greatest(site_state.last_event_at, excluded.last_event_at);
