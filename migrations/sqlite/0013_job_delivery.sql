-- Job delivery through a message broker (RabbitMQ). The row stays the job's truth; a message
-- only says "job N may be due". `published_at` is when a message for the row's current wait
-- was last handed to the broker; NULL means the row still needs one (never published, publish
-- not confirmed, requeued for a retry, reclaimed, replayed), which is what the relay looks for.
-- Without a broker the column stays NULL and nothing reads it.
ALTER TABLE jobs ADD COLUMN published_at INTEGER;
CREATE INDEX jobs_unpublished ON jobs (run_at) WHERE state = 'queued' AND published_at IS NULL;
