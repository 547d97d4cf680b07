-- belt catalog, version 5: a conflict keeps the losing side's row as it was, so that
-- no write is lost without a trace (an insert/insert collision on one key included).
alter table conflicts add column loser_row text;
