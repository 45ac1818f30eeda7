-- Incoming calls, one row per call: the caller (+CLIP; NULL when withheld or
-- unknown) and whether smsgw hung up. Read by integrators and by the SMSServer
-- layer (smsserver_calls).
CREATE TABLE calls (
    id          BIGSERIAL PRIMARY KEY,
    modem       TEXT NOT NULL,
    caller      TEXT,
    received_at TIMESTAMPTZ NOT NULL,
    hung_up     BOOLEAN NOT NULL DEFAULT false
);
