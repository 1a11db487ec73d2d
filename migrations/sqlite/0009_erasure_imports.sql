-- Erasure redacts the person from import records and cancels unfinished uploads naming them.
ALTER TABLE erasures ADD COLUMN imports_scrubbed INTEGER NOT NULL DEFAULT 0;
