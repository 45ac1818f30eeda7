-- Incoming calls, one row per call: the caller (+CLIP; NULL when withheld or
-- unknown) and whether smsgw hung up. Read by integrators and by the SMSServer
-- layer (smsserver_calls).
CREATE TABLE calls (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    modem       VARCHAR(64) NOT NULL,
    caller      VARCHAR(64),
    received_at DATETIME(6) NOT NULL,
    hung_up     BOOLEAN NOT NULL DEFAULT FALSE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
