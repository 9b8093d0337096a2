-- A shipment's delivery status at {t}, first rule that applies; a CASE expression over a
-- shipments row aliased `sh` and a relation `tol` holding the on-time tolerance (`minutes`).
-- Shared by the dashboard (dashboard/queries.py) and the late / at_risk alert rules, so both
-- call the same shipments late. "late" is what the on-time rate already counts as late: arrived
-- beyond tolerance, or still open after planned arrival + tolerance. "at_risk": not overdue
-- yet, but the ETA lies beyond tolerance.
CASE
        WHEN sh.status = 'CANCELLED' THEN NULL
        WHEN sh.delay_minutes IS NULL THEN 'no_plan'
        WHEN sh.is_late AND (sh.arrived_at IS NOT NULL
                             OR minutes_between({t}, sh.planned_arrival) > tol.minutes) THEN 'late'
        WHEN sh.is_late THEN 'at_risk'
        WHEN sh.last_exception_severity IN ('warning', 'critical')
             AND sh.arrived_at IS NULL THEN 'exception'
        ELSE 'on_time'
    END
