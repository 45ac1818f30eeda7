-- The outbox keeps every message ever sent. Each query the daemon runs again and
-- again reads only its few rows through one of these, whatever the history
-- (measured over 1,000,000 rows of history: docs/benchmarks.md). MySQL has no
-- partial indexes: the filtered column leads instead.

-- Per-recipient daily limits, before every send: today's sent rows.
CREATE INDEX outbox_sent_recipient ON outbox (sent_at, recipient, category);

-- Housekeeping, every 30 s: reports that never came make delivery `unknown`.
CREATE INDEX outbox_delivery_pending ON outbox (delivery, sent_at);
CREATE INDEX parts_pending ON outbox_parts (status, submitted_at);

-- `smsgw status` and the metrics: delivered in the last hour.
CREATE INDEX outbox_delivered ON outbox (delivered_at);

-- `smsgw status`, `smsgw watch` (every 2 s) and the metrics (every 15 s): messages
-- per state and category, counted from this index alone instead of the table.
CREATE INDEX outbox_state_category ON outbox (state, category);
