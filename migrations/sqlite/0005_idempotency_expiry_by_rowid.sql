-- Expired idempotency records are deleted in rowid order, which is the order they were written in
-- (an expired record is deleted before its key is used again, never updated in place): the index
-- on their age cost every keyed request a third b-tree insert, and only the cleanup used it.
DROP INDEX idempotency_keys_by_age;
