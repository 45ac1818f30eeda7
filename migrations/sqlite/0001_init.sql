-- smsgw schema, SQLite (the embedded default). Times are UTC text
-- 'YYYY-MM-DD HH:MM:SS.SSS' (what strftime('%Y-%m-%d %H:%M:%f') gives), so that
-- text comparison is time comparison. Other systems write UTC, e.g. datetime('now', '+1 hour').

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient       TEXT,
    body            TEXT,
    category        TEXT NOT NULL DEFAULT 'notice',
    priority        INTEGER NOT NULL DEFAULT 0,
    send_at         TEXT,
    expires_at      TEXT,
    dedupe_key      TEXT UNIQUE,
    modem_group     TEXT,
    request_report  INTEGER NOT NULL DEFAULT 1 CHECK (request_report IN (0, 1)),
    flash           INTEGER NOT NULL DEFAULT 0 CHECK (flash IN (0, 1)),
    external_ref    TEXT,
    state           TEXT NOT NULL DEFAULT 'queued',
    delivery        TEXT NOT NULL DEFAULT 'none',
    delivered_at    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    modem           TEXT,
    parts_total     INTEGER,
    sent_at         TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    due_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    lease_owner     TEXT,
    lease_until     TEXT,
    inflight_part   INTEGER,
    CONSTRAINT outbox_state_valid CHECK (state IN
        ('queued', 'sending', 'retrying', 'sent', 'failed', 'expired', 'cancelled', 'rejected', 'suppressed', 'ambiguous')),
    CONSTRAINT outbox_delivery_valid CHECK (delivery IN ('none', 'pending', 'delivered', 'failed', 'unknown')),
    CONSTRAINT outbox_lease_iff_sending CHECK (
        (state = 'sending' AND lease_owner IS NOT NULL AND lease_until IS NOT NULL)
        OR (state <> 'sending' AND lease_owner IS NULL AND lease_until IS NULL)),
    CONSTRAINT outbox_attempts_nonnegative CHECK (attempts >= 0)
);

CREATE INDEX outbox_claim ON outbox (priority DESC, due_at, id) WHERE state IN ('queued', 'retrying');
CREATE INDEX outbox_leases ON outbox (lease_until) WHERE state = 'sending';
CREATE INDEX outbox_recipient_sent ON outbox (recipient, sent_at);
CREATE INDEX outbox_external_ref ON outbox (external_ref);

-- due_at follows send_at, normalised to the canonical text form. An unreadable
-- send_at leaves the row due now; the dispatcher then rejects it with the reason.
CREATE TRIGGER outbox_due_insert AFTER INSERT ON outbox FOR EACH ROW WHEN NEW.send_at IS NOT NULL
BEGIN
    UPDATE outbox SET due_at = COALESCE(strftime('%Y-%m-%d %H:%M:%f', NEW.send_at), due_at) WHERE id = NEW.id;
END;
CREATE TRIGGER outbox_due_update AFTER UPDATE OF send_at ON outbox FOR EACH ROW WHEN NEW.state = 'queued'
BEGIN
    UPDATE outbox SET due_at = COALESCE(strftime('%Y-%m-%d %H:%M:%f', NEW.send_at), strftime('%Y-%m-%d %H:%M:%f', 'now'))
    WHERE id = NEW.id;
END;

CREATE TABLE outbox_parts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id       INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    modem           TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    mr              INTEGER,
    submitted_at    TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    tp_status       INTEGER,
    report_at       TEXT,
    discharge_at    TEXT,
    CONSTRAINT parts_status_valid CHECK (status IN ('none', 'pending', 'delivered', 'failed', 'unknown')),
    CONSTRAINT parts_mr_range CHECK (mr IS NULL OR mr BETWEEN 0 AND 255),
    UNIQUE (outbox_id, seq)
);
CREATE INDEX parts_report_match ON outbox_parts (modem, mr, submitted_at);

CREATE TABLE inbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    modem           TEXT NOT NULL,
    sender          TEXT NOT NULL,
    body            TEXT NOT NULL,
    parts           INTEGER NOT NULL DEFAULT 1,
    received_at     TEXT NOT NULL,
    stored_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    opt_out         INTEGER NOT NULL DEFAULT 0,
    fingerprint     TEXT NOT NULL UNIQUE
);
CREATE INDEX inbox_sender ON inbox (sender, received_at);

CREATE TABLE inbox_fragments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    modem           TEXT NOT NULL,
    sender          TEXT NOT NULL,
    concat_ref      INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    body            TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    UNIQUE (modem, sender, concat_ref, total, seq)
);

CREATE TABLE opt_outs (
    recipient       TEXT PRIMARY KEY,
    keyword         TEXT,
    source          TEXT NOT NULL DEFAULT 'sms',
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
