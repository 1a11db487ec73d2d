-- Erasure redacts the person from import records and cancels unfinished uploads naming them.
ALTER TABLE erasures ADD COLUMN imports_scrubbed BIGINT NOT NULL DEFAULT 0;
