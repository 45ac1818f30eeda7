-- The outbox keeps every message ever sent. Each query the daemon runs again and
-- again reads only its few rows through one of these, whatever the history
-- (measured over 1,000,000 rows of history: docs/benchmarks.md).

-- Per-recipient daily limits, before every send: today's sent rows. (A full
-- scan took ~150 ms per send on SQLite.)
CREATE INDEX outbox_sent_recipient ON outbox (sent_at, recipient, category) WHERE sent_at IS NOT NULL;

-- Housekeeping, every 30 s: reports that never came make delivery `unknown`.
-- Without these, SQLite walked the history through the index above (seconds,
-- holding the write lock).
CREATE INDEX outbox_delivery_pending ON outbox (sent_at) WHERE delivery = 'pending';
CREATE INDEX parts_pending ON outbox_parts (submitted_at) WHERE status = 'pending';

-- `smsgw status` and the metrics: delivered in the last hour.
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;

-- `smsgw status`, `smsgw watch` (every 2 s) and the metrics (every 15 s): messages
-- per state and category, counted from this index alone instead of the table. It
-- leaves out the claimable rows (counted through the claim index): a claim must
-- never find it usable, or it reads the backlog through it and sorts it.
CREATE INDEX outbox_state_category ON outbox (state, category) WHERE state NOT IN ('queued', 'retrying');
