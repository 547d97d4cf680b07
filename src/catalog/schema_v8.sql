-- belt catalog, version 8: a database's password may come from a command (its argv
-- as a JSON array), whose output is used for password_ttl seconds.
alter table dbs add column password_command text;
alter table dbs add column password_ttl integer;
