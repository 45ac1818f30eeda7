-- smsgw schema, MySQL 8 / MariaDB 10.6+. utf8mb4 so Chinese text and emoji survive.
-- Times are DATETIME(6) in UTC (smsgw sets the session time zone to +00:00).

CREATE TABLE outbox (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    recipient       VARCHAR(64),
    body            TEXT,
    category        VARCHAR(32) NOT NULL DEFAULT 'notice',
    priority        INT NOT NULL DEFAULT 0,
    send_at         DATETIME(6),
    expires_at      DATETIME(6),
    dedupe_key      VARCHAR(191) UNIQUE,
    modem_group     VARCHAR(64),
    request_report  BOOLEAN NOT NULL DEFAULT TRUE,
    flash           BOOLEAN NOT NULL DEFAULT FALSE,
    external_ref    VARCHAR(191),
    state           VARCHAR(16) NOT NULL DEFAULT 'queued',
    delivery        VARCHAR(16) NOT NULL DEFAULT 'none',
    delivered_at    DATETIME(6),
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT,
    modem           VARCHAR(64),
    parts_total     INT,
    sent_at         DATETIME(6),
    created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    due_at          DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    lease_owner     VARCHAR(64),
    lease_until     DATETIME(6),
    inflight_part   INT,
    -- MySQL has no partial indexes: this column is 1 for claimable rows, NULL otherwise.
    claimable       TINYINT AS (IF(state IN ('queued', 'retrying'), 1, NULL)) STORED,
    CONSTRAINT outbox_state_valid CHECK (state IN
        ('queued', 'sending', 'retrying', 'sent', 'failed', 'expired', 'cancelled', 'rejected', 'suppressed', 'ambiguous')),
    CONSTRAINT outbox_delivery_valid CHECK (delivery IN ('none', 'pending', 'delivered', 'failed', 'unknown')),
    CONSTRAINT outbox_lease_iff_sending CHECK (
        (state = 'sending' AND lease_owner IS NOT NULL AND lease_until IS NOT NULL)
        OR (state <> 'sending' AND lease_owner IS NULL AND lease_until IS NULL)),
    CONSTRAINT outbox_attempts_nonnegative CHECK (attempts >= 0),
    INDEX outbox_claim (claimable, priority DESC, due_at, id),
    INDEX outbox_leases (state, lease_until),
    INDEX outbox_recipient_sent (recipient, sent_at),
    INDEX outbox_external_ref (external_ref)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- due_at follows send_at (also when a queued row is rescheduled). Session time zone is UTC.
CREATE TRIGGER outbox_due_insert BEFORE INSERT ON outbox FOR EACH ROW
    SET NEW.due_at = COALESCE(NEW.send_at, UTC_TIMESTAMP(6));
CREATE TRIGGER outbox_due_update BEFORE UPDATE ON outbox FOR EACH ROW
    SET NEW.due_at = IF(NOT (NEW.send_at <=> OLD.send_at) AND NEW.state = 'queued',
                        COALESCE(NEW.send_at, UTC_TIMESTAMP(6)), NEW.due_at);

CREATE TABLE outbox_parts (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    outbox_id       BIGINT NOT NULL,
    seq             INT NOT NULL,
    total           INT NOT NULL,
    modem           VARCHAR(64) NOT NULL,
    recipient       VARCHAR(64) NOT NULL,
    mr              INT,
    submitted_at    DATETIME(6) NOT NULL,
    status          VARCHAR(16) NOT NULL DEFAULT 'pending',
    tp_status       INT,
    report_at       DATETIME(6),
    discharge_at    DATETIME(6),
    CONSTRAINT parts_status_valid CHECK (status IN ('none', 'pending', 'delivered', 'failed', 'unknown')),
    CONSTRAINT parts_mr_range CHECK (mr IS NULL OR mr BETWEEN 0 AND 255),
    CONSTRAINT parts_outbox FOREIGN KEY (outbox_id) REFERENCES outbox (id) ON DELETE CASCADE,
    UNIQUE KEY parts_unique (outbox_id, seq),
    INDEX parts_report_match (modem, mr, submitted_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE inbox (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    modem           VARCHAR(64) NOT NULL,
    sender          VARCHAR(64) NOT NULL,
    body            TEXT NOT NULL,
    parts           INT NOT NULL DEFAULT 1,
    received_at     DATETIME(6) NOT NULL,
    stored_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    opt_out         BOOLEAN NOT NULL DEFAULT FALSE,
    fingerprint     VARCHAR(64) NOT NULL UNIQUE,
    INDEX inbox_sender (sender, received_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE inbox_fragments (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    modem           VARCHAR(64) NOT NULL,
    sender          VARCHAR(64) NOT NULL,
    concat_ref      INT NOT NULL,
    total           INT NOT NULL,
    seq             INT NOT NULL,
    body            TEXT NOT NULL,
    received_at     DATETIME(6) NOT NULL,
    created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY fragments_unique (modem, sender, concat_ref, total, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE opt_outs (
    recipient       VARCHAR(64) NOT NULL PRIMARY KEY,
    keyword         VARCHAR(64),
    source          VARCHAR(16) NOT NULL DEFAULT 'sms',
    created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
