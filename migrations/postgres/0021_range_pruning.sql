-- The relay's reads of a range touch only the outbox partitions their keys can be in (docs/delivery.md, "Retention").
--
-- eventlog.range_rows_in(): 0018's range_rows() with one more argument, `slots`: NULL, or the partitions
-- ((txid >> 16) & 15) the key interval's rows can be in. It changes no result (every row of the interval is in one of
-- those slots); given the slots as a value, the planner prunes the other partitions at plan time, so the read opens
-- and locks only those (usually one or two of sixteen). The relay's read passes
-- eventlog.outbox_slots(from_txid, to_txid), which the planner computes once from the read's parameters (an unnamed
-- statement is planned with their values). Before, every read locked all sixteen partitions (ACCESS SHARE, from
-- planning), so with two relays reading back to back another relay's TRUNCATE of a delivered partition often waited
-- out its lock timeout, and the partition stayed on disk until a later pass.
--
-- range_rows() stays the one definition for everyone else (the claim, the backlog, the checker): it is range_rows_in()
-- with NULL, a condition the planner removes. (A first version put the slots into range_rows() itself: the claim's
-- PL/pgSQL statements, once their plans went generic after five calls, evaluated the slots function for every row, and
-- a claim of 10,000 keys took 160-195 ms instead of 23-35 ms.)

-- The outbox partitions of transaction ids from_txid..to_txid: all sixteen when the interval spans sixteen turns of
-- 65,536 ids or more (or is empty), else the slots of the turns it spans.
CREATE FUNCTION eventlog.outbox_slots(from_txid bigint, to_txid bigint) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN to_txid < from_txid OR (to_txid >> 16) - (from_txid >> 16) >= 15
                THEN ARRAY(SELECT s FROM pg_catalog.generate_series(0::bigint, 15) s)
                ELSE ARRAY(SELECT w & 15 FROM pg_catalog.generate_series(from_txid >> 16, to_txid >> 16) w) END
$$;

-- As 0018's range_rows(), restricted to the partitions in `slots` when it is not NULL. No SET clause, so that the
-- planner inlines it (as range_rows()).
CREATE FUNCTION eventlog.range_rows_in(lo txid_snapshot, hi txid_snapshot, from_txid bigint, from_id bigint,
                                       to_txid bigint, to_id bigint, max_rows bigint, slots bigint[])
RETURNS SETOF eventlog.outbox
LANGUAGE sql STABLE AS $$
    (SELECT o.* FROM eventlog.outbox o
     WHERE o.txid = ANY (ARRAY(SELECT x FROM pg_catalog.txid_snapshot_xip(lo) x
                               WHERE pg_catalog.txid_visible_in_snapshot(x, hi)))
       AND (o.txid, o.id) >= (from_txid, from_id) AND (o.txid, o.id) <= (to_txid, to_id)
       AND (slots IS NULL OR ((o.txid >> 16) & 15) = ANY (slots))
     ORDER BY o.txid, o.id LIMIT max_rows)
    UNION ALL
    (SELECT o.* FROM eventlog.outbox o
     WHERE o.txid >= pg_catalog.txid_snapshot_xmax(lo) AND o.txid < pg_catalog.txid_snapshot_xmax(hi)
       AND pg_catalog.txid_visible_in_snapshot(o.txid, hi)
       AND (o.txid, o.id) >= (from_txid, from_id) AND (o.txid, o.id) <= (to_txid, to_id)
       AND (slots IS NULL OR ((o.txid >> 16) & 15) = ANY (slots))
     ORDER BY o.txid, o.id LIMIT max_rows)
$$;

CREATE OR REPLACE FUNCTION eventlog.range_rows(lo txid_snapshot, hi txid_snapshot, from_txid bigint, from_id bigint,
                                               to_txid bigint, to_id bigint, max_rows bigint)
RETURNS SETOF eventlog.outbox
LANGUAGE sql STABLE AS $$
    SELECT * FROM eventlog.range_rows_in(lo, hi, from_txid, from_id, to_txid, to_id, max_rows, NULL::bigint[])
$$;

REVOKE ALL ON FUNCTION eventlog.outbox_slots(bigint, bigint),
    eventlog.range_rows_in(txid_snapshot, txid_snapshot, bigint, bigint, bigint, bigint, bigint, bigint[]) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.outbox_slots(bigint, bigint),
        eventlog.range_rows_in(txid_snapshot, txid_snapshot, bigint, bigint, bigint, bigint, bigint, bigint[])
        TO eventlog_relay, eventlog_admin;
END
$grants$;
