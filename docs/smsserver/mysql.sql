-- SMSLib SMSServer's tables (its misc/smsserver/database layout), MySQL/MariaDB.
-- smsgw serves them with [compat] smsserver = true. It never creates them.
CREATE TABLE smsserver_in (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  process int NOT NULL,
  originator varchar(16) NOT NULL,
  type varchar(1) NOT NULL,
  encoding char(1) NOT NULL,
  message_date datetime NOT NULL,
  receive_date datetime NOT NULL,
  text varchar(1000) NOT NULL,
  original_ref_no varchar(64) DEFAULT NULL,
  original_receive_date datetime DEFAULT NULL,
  gateway_id varchar(64) DEFAULT NULL
) DEFAULT CHARSET=utf8mb4;
CREATE TABLE smsserver_out (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  type varchar(1) NOT NULL DEFAULT 'O',
  recipient varchar(16) NOT NULL,
  text varchar(1000) NOT NULL,
  wap_url varchar(100) DEFAULT NULL,
  wap_expiry_date datetime DEFAULT NULL,
  wap_signal varchar(1) DEFAULT NULL,
  create_date datetime NOT NULL,
  originator varchar(16) NOT NULL DEFAULT ' ',
  encoding varchar(1) NOT NULL DEFAULT '7',
  status_report int NOT NULL DEFAULT 0,
  flash_sms int NOT NULL DEFAULT 0,
  src_port int NOT NULL DEFAULT -1,
  dst_port int NOT NULL DEFAULT -1,
  sent_date datetime DEFAULT NULL,
  ref_no varchar(64) DEFAULT NULL,
  priority int NOT NULL DEFAULT 0,
  status varchar(1) NOT NULL DEFAULT 'U',
  errors int NOT NULL DEFAULT 0,
  gateway_id varchar(64) NOT NULL DEFAULT '*'
) DEFAULT CHARSET=utf8mb4;
CREATE TABLE smsserver_calls (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  call_date datetime NOT NULL,
  gateway_id varchar(64) NOT NULL,
  caller_id varchar(16) NOT NULL
) DEFAULT CHARSET=utf8mb4;
