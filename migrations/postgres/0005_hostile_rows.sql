-- Values another system can write that smsgw cannot use are refused at insert
-- (the clearest error the inserting system can get). A TIMESTAMPTZ admits
-- 'infinity', '-infinity', BC dates and years past chrono's range: times must
-- be finite, years 1000 to 9999. Rows already present are made to fit first:
-- 'infinity' as an expiry and '-infinity' as a send time mean what NULL means
-- (never expires; due now) and become NULL; any other unusable time rejects a
-- row still waiting, with the reason, and is cleared in the history.

-- Parts of incoming messages already reassembled, by fingerprint: a part read
-- again after a crash (or replayed from the journal) is recognised and ignored.
CREATE TABLE inbox_fragments_done (
    fingerprint     TEXT PRIMARY KEY,
    done_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX fragments_done_at ON inbox_fragments_done (done_at);

UPDATE outbox SET expires_at = NULL WHERE expires_at = 'infinity';
UPDATE outbox SET send_at = NULL WHERE send_at = '-infinity';

UPDATE outbox SET state = 'rejected',
       last_error = 'send_at ' || send_at::text || ' is not a time smsgw can use (finite, years 1000 to 9999)',
       updated_at = now()
 WHERE state IN ('queued', 'retrying') AND send_at IS NOT NULL
   AND NOT (isfinite(send_at) AND send_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND send_at < TIMESTAMPTZ '10000-01-01 00:00:00+00');
UPDATE outbox SET state = 'rejected',
       last_error = 'expires_at ' || expires_at::text || ' is not a time smsgw can use (finite, years 1000 to 9999)',
       updated_at = now()
 WHERE state IN ('queued', 'retrying') AND expires_at IS NOT NULL
   AND NOT (isfinite(expires_at) AND expires_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND expires_at < TIMESTAMPTZ '10000-01-01 00:00:00+00');
UPDATE outbox SET send_at = NULL
 WHERE send_at IS NOT NULL
   AND NOT (isfinite(send_at) AND send_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND send_at < TIMESTAMPTZ '10000-01-01 00:00:00+00');
UPDATE outbox SET expires_at = NULL
 WHERE expires_at IS NOT NULL
   AND NOT (isfinite(expires_at) AND expires_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND expires_at < TIMESTAMPTZ '10000-01-01 00:00:00+00');
-- A rejected row may have kept an unusable due time from its send_at.
UPDATE outbox SET due_at = now() WHERE NOT isfinite(due_at);

ALTER TABLE outbox ADD CONSTRAINT outbox_send_at_usable CHECK (send_at IS NULL OR
    (isfinite(send_at) AND send_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND send_at < TIMESTAMPTZ '10000-01-01 00:00:00+00'));
ALTER TABLE outbox ADD CONSTRAINT outbox_expires_at_usable CHECK (expires_at IS NULL OR
    (isfinite(expires_at) AND expires_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND expires_at < TIMESTAMPTZ '10000-01-01 00:00:00+00'));

-- A send time smsgw cannot use makes the row due at once (it is then rejected
-- with the reason): never a row that waits for 'infinity' or the year 294276,
-- even where the constraints above were dropped.
CREATE OR REPLACE FUNCTION smsgw_outbox_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.send_at IS DISTINCT FROM OLD.send_at AND NEW.state = 'queued') THEN
        IF NEW.send_at IS NULL OR NOT (isfinite(NEW.send_at)
                AND NEW.send_at >= TIMESTAMPTZ '1000-01-01 00:00:00+00'
                AND NEW.send_at < TIMESTAMPTZ '10000-01-01 00:00:00+00') THEN
            NEW.due_at := now();
        ELSE
            NEW.due_at := NEW.send_at;
        END IF;
    END IF;
    RETURN NEW;
END $$;
