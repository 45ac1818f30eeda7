-- The per-recipient daily limits count a customer's messages sent since local
-- midnight before every send. Through this index they read today's sent rows
-- only, whatever the history.
CREATE INDEX outbox_sent_recipient ON outbox (sent_at, recipient, category);
