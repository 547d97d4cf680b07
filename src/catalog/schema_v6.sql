-- belt catalog, version 6: a conflict records its kind (insert/insert, update/update,
-- update/delete, delete/delete), so that two applications inserting one key — rows
-- that never were one row — can be told from two edits of one row.
alter table conflicts add column kind text;
