-- How far each compatibility layer has copied smsgw's rows into another
-- tool's tables (gammu's inbox, SMSServer's smsserver_in and smsserver_calls),
-- so that a restart goes on from there: a row the other tool's reader has
-- already processed and deleted is never copied again.
CREATE TABLE compat_cursors (
    name        VARCHAR(64) NOT NULL PRIMARY KEY,
    value       BIGINT NOT NULL,
    -- A second key within one value (a part id among reports recorded at
    -- the same instant); 0 where unused.
    part        BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The SMSServer layer reads the reports recorded since its cursor.
CREATE INDEX parts_report_at ON outbox_parts (report_at);
