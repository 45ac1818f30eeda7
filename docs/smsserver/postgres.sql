-- SMSLib SMSServer's tables (its misc/smsserver/database layout), PostgreSQL.
-- smsgw serves them with [compat] smsserver = true. It never creates them.
CREATE TABLE smsserver_in (
  id serial PRIMARY KEY,
  process integer NOT NULL,
  originator varchar(16) NOT NULL,
  type varchar(1) NOT NULL,
  encoding varchar(1) NOT NULL,
  message_date timestamp NOT NULL,
  receive_date timestamp NOT NULL,
  text text NOT NULL,
  original_ref_no varchar(64),
  original_receive_date timestamp,
  gateway_id varchar(64) NOT NULL
);
CREATE TABLE smsserver_out (
  id serial PRIMARY KEY,
  type varchar(1) NOT NULL DEFAULT 'O',
  recipient varchar(16) NOT NULL,
  text text NOT NULL,
  wap_url varchar(100),
  wap_expiry_date timestamp,
  wap_signal varchar(1),
  create_date timestamp NOT NULL,
  originator varchar(16) NOT NULL DEFAULT ' ',
  encoding varchar(1) NOT NULL DEFAULT '7',
  status_report integer NOT NULL DEFAULT 0,
  flash_sms integer NOT NULL DEFAULT 0,
  src_port integer NOT NULL DEFAULT -1,
  dst_port integer NOT NULL DEFAULT -1,
  sent_date timestamp,
  ref_no varchar(64),
  priority integer NOT NULL DEFAULT 0,
  status varchar(1) NOT NULL DEFAULT 'U',
  errors integer NOT NULL DEFAULT 0,
  gateway_id varchar(64) NOT NULL DEFAULT '*'
);
CREATE TABLE smsserver_calls (
  id serial PRIMARY KEY,
  call_date timestamp NOT NULL,
  gateway_id varchar(64) NOT NULL,
  caller_id varchar(16) NOT NULL
);
