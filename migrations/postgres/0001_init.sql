-- smsgw schema, PostgreSQL. The outbox table is the public contract (docs/integration.md).

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    -- Written by other systems. Only recipient and body are required; both may be NULL
    -- here so that a bad row is rejected with a reason instead of failing the INSERT.
    recipient       TEXT,
    body            TEXT,
    category        TEXT NOT NULL DEFAULT 'notice',
    priority        INTEGER NOT NULL DEFAULT 0,
    send_at         TIMESTAMPTZ,
    expires_at      TIMESTAMPTZ,
    dedupe_key      TEXT UNIQUE,
    modem_group     TEXT,
    request_report  BOOLEAN NOT NULL DEFAULT TRUE,
    flash           BOOLEAN NOT NULL DEFAULT FALSE,
    external_ref    TEXT,
    -- Written by smsgw.
    state           TEXT NOT NULL DEFAULT 'queued',
    delivery        TEXT NOT NULL DEFAULT 'none',
    delivered_at    TIMESTAMPTZ,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    modem           TEXT,
    parts_total     INTEGER,
    sent_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Internal: when the row may be claimed, who holds it, which part is on the wire.
    due_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    inflight_part   INTEGER,
    CONSTRAINT outbox_state_valid CHECK (state IN
        ('queued', 'sending', 'retrying', 'sent', 'failed', 'expired', 'cancelled', 'rejected', 'suppressed', 'ambiguous')),
    CONSTRAINT outbox_delivery_valid CHECK (delivery IN ('none', 'pending', 'delivered', 'failed', 'unknown')),
    CONSTRAINT outbox_lease_iff_sending CHECK (
        (state = 'sending' AND lease_owner IS NOT NULL AND lease_until IS NOT NULL)
        OR (state <> 'sending' AND lease_owner IS NULL AND lease_until IS NULL)),
    CONSTRAINT outbox_attempts_nonnegative CHECK (attempts >= 0)
);

-- The claim query's order, over claimable rows only.
CREATE INDEX outbox_claim ON outbox (priority DESC, due_at, id) WHERE state IN ('queued', 'retrying');
-- The rescuer's query.
CREATE INDEX outbox_leases ON outbox (lease_until) WHERE state = 'sending';
CREATE INDEX outbox_recipient_sent ON outbox (recipient, sent_at);
CREATE INDEX outbox_external_ref ON outbox (external_ref);

-- due_at follows send_at, also when another system reschedules a queued row.
CREATE FUNCTION smsgw_outbox_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.send_at IS DISTINCT FROM OLD.send_at AND NEW.state = 'queued') THEN
        NEW.due_at := COALESCE(NEW.send_at, now());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER outbox_due BEFORE INSERT OR UPDATE OF send_at ON outbox
    FOR EACH ROW EXECUTE FUNCTION smsgw_outbox_due();

-- Wake the daemon at once when any system inserts (one notification per statement).
CREATE FUNCTION smsgw_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smsgw_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION smsgw_outbox_notify();

CREATE TABLE outbox_parts (
    id              BIGSERIAL PRIMARY KEY,
    outbox_id       BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    modem           TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    mr              INTEGER,
    submitted_at    TIMESTAMPTZ NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    tp_status       INTEGER,
    report_at       TIMESTAMPTZ,
    discharge_at    TIMESTAMPTZ,
    CONSTRAINT parts_status_valid CHECK (status IN ('none', 'pending', 'delivered', 'failed', 'unknown')),
    CONSTRAINT parts_mr_range CHECK (mr IS NULL OR mr BETWEEN 0 AND 255),
    UNIQUE (outbox_id, seq)
);
CREATE INDEX parts_report_match ON outbox_parts (modem, mr, submitted_at);

CREATE TABLE inbox (
    id              BIGSERIAL PRIMARY KEY,
    modem           TEXT NOT NULL,
    sender          TEXT NOT NULL,
    body            TEXT NOT NULL,
    parts           INTEGER NOT NULL DEFAULT 1,
    received_at     TIMESTAMPTZ NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    opt_out         BOOLEAN NOT NULL DEFAULT FALSE,
    -- Identifies a message read twice (after a restart before its deletion).
    fingerprint     TEXT NOT NULL UNIQUE
);
CREATE INDEX inbox_sender ON inbox (sender, received_at);

-- Parts of concatenated incoming messages wait here until all have arrived.
CREATE TABLE inbox_fragments (
    id              BIGSERIAL PRIMARY KEY,
    modem           TEXT NOT NULL,
    sender          TEXT NOT NULL,
    concat_ref      INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    body            TEXT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (modem, sender, concat_ref, total, seq)
);

CREATE TABLE opt_outs (
    recipient       TEXT PRIMARY KEY,
    keyword         TEXT,
    source          TEXT NOT NULL DEFAULT 'sms',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
