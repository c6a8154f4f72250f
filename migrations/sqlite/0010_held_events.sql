-- A provider's provisional outcome of an open attempt (Retell's call_ended before call_analyzed,
-- Vapi's status-update "ended" before its end-of-call-report), as JSON: applied when the
-- attempt's deadline passes with no final event (PROVIDERS.md §4, §5).
ALTER TABLE attempts ADD COLUMN held_event TEXT;
