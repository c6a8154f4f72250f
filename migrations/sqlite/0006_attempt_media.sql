-- What providers report about a call besides its outcome (contract §5.4): the recording's URL and
-- the transcript (a JSON array of {sent_by, sent_at, content}).
ALTER TABLE attempts ADD COLUMN recording_url TEXT;
ALTER TABLE attempts ADD COLUMN transcript TEXT;
