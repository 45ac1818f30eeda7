-- Incoming calls, one row per call: the caller (+CLIP; NULL when withheld or
-- unknown) and whether smsgw hung up. Read by integrators and by the SMSServer
-- layer (smsserver_calls).
CREATE TABLE calls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    modem       TEXT NOT NULL,
    caller      TEXT,
    received_at TEXT NOT NULL,
    hung_up     INTEGER NOT NULL DEFAULT 0 CHECK (hung_up IN (0, 1))
);
