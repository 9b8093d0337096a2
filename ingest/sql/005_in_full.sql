-- Migration 5: OTIF's in-full test kept with each shipment's state, computed when the state
-- changes, so the KPI queries read one boolean instead of both line lists of every shipment
-- (at 10M events that was about half of the period KPIs' and the carrier scorecard's time).
ALTER TABLE shipment_state ADD COLUMN in_full BOOLEAN;

UPDATE shipment_state SET in_full = lines_in_full(plan.lines, delivered.lines);
