-- Values another system can write that smsgw cannot use are refused at insert
-- (the clearest error the inserting system can get). With a permissive sql_mode
-- a DATETIME admits zero dates ('0000-00-00', '2026-00-00'): times must be real
-- dates from the year 1000. Rows already present are made to fit first: a row
-- still waiting with such a time is rejected with the reason, and the value is
-- cleared (it never was a time).

-- Parts of incoming messages already reassembled, by fingerprint: a part read
-- again after a crash (or replayed from the journal) is recognised and ignored.
CREATE TABLE inbox_fragments_done (
    fingerprint     VARCHAR(64) NOT NULL PRIMARY KEY,
    done_at         DATETIME(6) NOT NULL,
    INDEX fragments_done_at (done_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

UPDATE outbox SET state = 'rejected',
       last_error = CONCAT('send_at ', CAST(send_at AS CHAR), ' is not a valid time (a zero date?)'),
       updated_at = UTC_TIMESTAMP(6)
 WHERE claimable = 1 AND send_at IS NOT NULL
   AND (send_at < '1000-01-01' OR MONTH(send_at) = 0 OR DAYOFMONTH(send_at) = 0);
UPDATE outbox SET state = 'rejected',
       last_error = CONCAT('expires_at ', CAST(expires_at AS CHAR), ' is not a valid time (a zero date?)'),
       updated_at = UTC_TIMESTAMP(6)
 WHERE claimable = 1 AND expires_at IS NOT NULL
   AND (expires_at < '1000-01-01' OR MONTH(expires_at) = 0 OR DAYOFMONTH(expires_at) = 0);
UPDATE outbox SET send_at = NULL
 WHERE send_at IS NOT NULL AND (send_at < '1000-01-01' OR MONTH(send_at) = 0 OR DAYOFMONTH(send_at) = 0);
UPDATE outbox SET expires_at = NULL
 WHERE expires_at IS NOT NULL AND (expires_at < '1000-01-01' OR MONTH(expires_at) = 0 OR DAYOFMONTH(expires_at) = 0);
UPDATE outbox SET due_at = UTC_TIMESTAMP(6)
 WHERE due_at < '1000-01-01' OR MONTH(due_at) = 0 OR DAYOFMONTH(due_at) = 0;

ALTER TABLE outbox
    ADD CONSTRAINT outbox_send_at_valid CHECK (send_at IS NULL OR
        (send_at >= '1000-01-01' AND MONTH(send_at) > 0 AND DAYOFMONTH(send_at) > 0)),
    ADD CONSTRAINT outbox_expires_at_valid CHECK (expires_at IS NULL OR
        (expires_at >= '1000-01-01' AND MONTH(expires_at) > 0 AND DAYOFMONTH(expires_at) > 0));
