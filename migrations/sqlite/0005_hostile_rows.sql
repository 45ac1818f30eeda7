-- Values another system can write that smsgw cannot use are refused at insert
-- (the clearest error the inserting system can get), and rows already queued
-- with them are rejected now, with the reason. SQLite stores whatever it is
-- given, so the refusals are triggers.

-- Parts of incoming messages already reassembled, by fingerprint: a part read
-- again after a crash (or replayed from the journal) is recognised and ignored.
CREATE TABLE inbox_fragments_done (
    fingerprint     TEXT PRIMARY KEY,
    done_at         TEXT NOT NULL
);
CREATE INDEX fragments_done_at ON inbox_fragments_done (done_at);

UPDATE outbox SET state = 'rejected',
       last_error = 'priority ' || quote(priority) || ' is not an integer between -2147483648 and 2147483647',
       updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE state IN ('queued', 'retrying')
   AND (typeof(priority) <> 'integer' OR priority NOT BETWEEN -2147483648 AND 2147483647);

UPDATE outbox SET state = 'rejected',
       last_error = 'send_at ' || quote(send_at) || ' is not UTC text YYYY-MM-DD HH:MM:SS',
       updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE state IN ('queued', 'retrying') AND send_at IS NOT NULL
   AND (typeof(send_at) <> 'text' OR strftime('%s', send_at) IS NULL);

UPDATE outbox SET state = 'rejected',
       last_error = 'expires_at ' || quote(expires_at) || ' is not UTC text YYYY-MM-DD HH:MM:SS',
       updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE state IN ('queued', 'retrying') AND expires_at IS NOT NULL
   AND (typeof(expires_at) <> 'text' OR strftime('%s', expires_at) IS NULL);

CREATE TRIGGER outbox_priority_integer_insert BEFORE INSERT ON outbox FOR EACH ROW
    WHEN typeof(NEW.priority) <> 'integer' OR NEW.priority NOT BETWEEN -2147483648 AND 2147483647
BEGIN
    SELECT RAISE(ABORT, 'outbox.priority must be an integer between -2147483648 and 2147483647');
END;
CREATE TRIGGER outbox_priority_integer_update BEFORE UPDATE OF priority ON outbox FOR EACH ROW
    WHEN typeof(NEW.priority) <> 'integer' OR NEW.priority NOT BETWEEN -2147483648 AND 2147483647
BEGIN
    SELECT RAISE(ABORT, 'outbox.priority must be an integer between -2147483648 and 2147483647');
END;

CREATE TRIGGER outbox_times_text_insert BEFORE INSERT ON outbox FOR EACH ROW
    WHEN (NEW.send_at IS NOT NULL AND (typeof(NEW.send_at) <> 'text' OR strftime('%s', NEW.send_at) IS NULL))
      OR (NEW.expires_at IS NOT NULL AND (typeof(NEW.expires_at) <> 'text' OR strftime('%s', NEW.expires_at) IS NULL))
BEGIN
    SELECT RAISE(ABORT, 'outbox.send_at and outbox.expires_at must be NULL or UTC text YYYY-MM-DD HH:MM:SS');
END;
CREATE TRIGGER outbox_times_text_update BEFORE UPDATE OF send_at, expires_at ON outbox FOR EACH ROW
    WHEN (NEW.send_at IS NOT NULL AND (typeof(NEW.send_at) <> 'text' OR strftime('%s', NEW.send_at) IS NULL))
      OR (NEW.expires_at IS NOT NULL AND (typeof(NEW.expires_at) <> 'text' OR strftime('%s', NEW.expires_at) IS NULL))
BEGIN
    SELECT RAISE(ABORT, 'outbox.send_at and outbox.expires_at must be NULL or UTC text YYYY-MM-DD HH:MM:SS');
END;

CREATE TRIGGER outbox_text_not_blob_insert BEFORE INSERT ON outbox FOR EACH ROW
    WHEN typeof(NEW.recipient) = 'blob' OR typeof(NEW.body) = 'blob' OR typeof(NEW.category) = 'blob'
BEGIN
    SELECT RAISE(ABORT, 'outbox.recipient, body and category must be text, not BLOBs');
END;
CREATE TRIGGER outbox_text_not_blob_update BEFORE UPDATE OF recipient, body, category ON outbox FOR EACH ROW
    WHEN typeof(NEW.recipient) = 'blob' OR typeof(NEW.body) = 'blob' OR typeof(NEW.category) = 'blob'
BEGIN
    SELECT RAISE(ABORT, 'outbox.recipient, body and category must be text, not BLOBs');
END;
