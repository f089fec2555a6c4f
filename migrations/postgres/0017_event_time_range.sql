-- event_date_time within the range ClickHouse's DateTime stores, 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z
-- (issue 20; include/eventlog/core/event.hpp states the same bounds, and a test proves the two agree). Before, a
-- date outside it was accepted by every path and dead-lettered by the relay, each holding up to 1 MiB of
-- PostgreSQL for good. One constraint on the table covers emit(), emit_checked(), emit_batch(), COPY and a direct
-- INSERT alike; its name is the message a producer reads (SQLSTATE 23514). A single range comparison per row: the
-- costlier CHECK constraints 0013 measured tested lengths of several columns. NOT VALID: rows already waiting are
-- not scanned (the relay dead-letters one out of range, as before), and a dead letter out of range stays one
-- (replay moves only those ClickHouse can store).
ALTER TABLE eventlog.outbox
    ADD CONSTRAINT "event_date_time: expected 1970-01-01 to 2106-02-07T06:28:15Z"
        CHECK (event_date_time >= '1970-01-01 00:00:00+00' AND event_date_time < '2106-02-07 06:28:16+00') NOT VALID;
