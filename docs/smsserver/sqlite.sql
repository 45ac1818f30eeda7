-- SMSLib SMSServer's tables, a SQLite equivalent of its MySQL/PostgreSQL
-- layout (times as 'YYYY-MM-DD HH:MM:SS' local time, as SMSServer writes them).
-- smsgw serves them with [compat] smsserver = true. It never creates them.
CREATE TABLE smsserver_in (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  process INTEGER NOT NULL,
  originator TEXT NOT NULL,
  type TEXT NOT NULL,
  encoding TEXT NOT NULL,
  message_date TEXT NOT NULL,
  receive_date TEXT NOT NULL,
  text TEXT NOT NULL,
  original_ref_no TEXT,
  original_receive_date TEXT,
  gateway_id TEXT NOT NULL
);
CREATE TABLE smsserver_out (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL DEFAULT 'O',
  recipient TEXT NOT NULL,
  text TEXT NOT NULL,
  wap_url TEXT,
  wap_expiry_date TEXT,
  wap_signal TEXT,
  create_date TEXT NOT NULL,
  originator TEXT NOT NULL DEFAULT ' ',
  encoding TEXT NOT NULL DEFAULT '7',
  status_report INTEGER NOT NULL DEFAULT 0,
  flash_sms INTEGER NOT NULL DEFAULT 0,
  src_port INTEGER NOT NULL DEFAULT -1,
  dst_port INTEGER NOT NULL DEFAULT -1,
  sent_date TEXT,
  ref_no TEXT,
  priority INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL DEFAULT 'U',
  errors INTEGER NOT NULL DEFAULT 0,
  gateway_id TEXT NOT NULL DEFAULT '*'
);
CREATE TABLE smsserver_calls (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  call_date TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  caller_id TEXT NOT NULL
);
