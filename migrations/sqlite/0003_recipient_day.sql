-- The per-recipient daily limits count a customer's messages sent since local
-- midnight before every send. Through this index they read today's sent rows
-- only, whatever the history (a full scan of a year's outbox took ~350 ms a send).
CREATE INDEX outbox_sent_recipient ON outbox (sent_at, recipient, category) WHERE sent_at IS NOT NULL;
