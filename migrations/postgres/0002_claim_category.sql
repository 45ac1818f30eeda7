-- The urgent claim (`[sending] urgent_categories`): due rows of one category in
-- claim order, found without reading the rest of the backlog.
CREATE INDEX outbox_claim_category ON outbox (category, priority DESC, due_at, id)
    WHERE state IN ('queued', 'retrying');
