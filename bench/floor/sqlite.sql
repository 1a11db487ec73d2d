-- The SQLite floor of a CSV import (bench/import_floor.sh): the sqlite3 shell's own CSV reader
-- into a staging table, then one INSERT … SELECT that normalises what leadgate's import
-- normalises (trimmed lower-case emails, one-line cells, bare website hosts, country names to
-- codes, national phone numbers to E.164 by the row's country, statuses, scores, tags) and
-- leaves the invalid rows out (their row numbers kept aside), with the secondary indexes of
-- `leads` and `lead_tags` dropped before and rebuilt after. Ids ascend with the row, as
-- leadgate's time-ordered ids do, so every B-tree is appended to in order. Same page cache
-- and journal as leadgate's writer. The script substitutes :CSV, :COUNTRIES, :INDEXES (a path
-- prefix for two scratch files) and :WS (the workspace id as a blob literal). Written for SQLite 3.40 (no unhex, concat_ws or subsec).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA cache_size = -16384;
CREATE TEMP TABLE staging (first_name, last_name, email, company, phone, country, title,
                           website, status, source, score, tags);
.import --csv --skip 1 :CSV staging
CREATE TEMP TABLE country_map (code TEXT, name TEXT, dial TEXT);
.import --csv :COUNTRIES country_map
CREATE TEMP TABLE country_key (k TEXT PRIMARY KEY, code TEXT, dial TEXT);
INSERT INTO country_key SELECT lower(name), code, dial FROM country_map
    UNION ALL SELECT lower(code), code, dial FROM country_map;

CREATE TEMP VIEW parsed AS
SELECT s.rn AS row_number,
       nullif(lower(trim(s.email)), '') AS email,
       nullif(trim(replace(s.first_name, char(10), ' ')), '') AS first_name,
       trim(replace(s.last_name, char(10), ' ')) AS last_name,
       nullif(trim(replace(s.title, char(10), ' ')), '') AS title,
       trim(replace(s.company, char(10), ' ')) AS company_name,
       nullif(rtrim(replace(replace(replace(lower(trim(s.website)), 'https://', ''), 'http://', ''), 'www.', ''), '/'), '') AS company_domain,
       CASE WHEN s.compact LIKE '+%' THEN s.compact
            WHEN s.compact = '' THEN NULL
            WHEN c.dial = '1' AND length(s.compact) = 11 AND s.compact LIKE '1%' THEN '+1' || substr(s.compact, 2)
            WHEN c.code = 'IT' THEN '+' || c.dial || s.compact
            ELSE '+' || c.dial || ltrim(s.compact, '0') END AS phone,
       coalesce(c.code, nullif(trim(s.country), '')) AS country,
       nullif(trim(s.source), '') AS source,
       upper(trim(s.status)) AS status,
       trim(s.score) AS score,
       CASE WHEN trim(s.tags) = '' THEN '[]'
            ELSE '["' || replace(trim(s.tags), ';', '","') || '"]' END AS tags
FROM (SELECT *, rowid AS rn,
             replace(replace(replace(replace(replace(trim(phone), ' ', ''), '-', ''), '(', ''), ')', ''), '.', '') AS compact
      FROM staging) s
LEFT JOIN country_key c ON c.k = lower(trim(s.country))
WHERE s.first_name <> '' OR s.email <> '' OR s.company <> '';

CREATE TEMP VIEW checked AS
SELECT *, (email IS NOT NULL AND (email NOT LIKE '%_@_%._%' OR email LIKE '% %'))
          OR status NOT IN ('', 'NEW', 'CONTACTED', 'QUALIFIED', 'UNQUALIFIED', 'CUSTOMER')
          OR (score <> '' AND (score GLOB '*[^0-9]*' OR CAST(score AS INTEGER) > 100))
          OR (country IS NOT NULL AND length(country) <> 2) AS invalid
FROM parsed;

-- every secondary index of leads and lead_tags (those with SQL of their own), as the schema
-- has them: dropped now, recreated after the load
.headers off
.mode list
.output :INDEXES.drop.sql
SELECT 'DROP INDEX ' || name || ';' FROM sqlite_master
WHERE type = 'index' AND tbl_name IN ('leads', 'lead_tags') AND sql IS NOT NULL;
.output :INDEXES.create.sql
SELECT sql || ';' FROM sqlite_master
WHERE type = 'index' AND tbl_name IN ('leads', 'lead_tags') AND sql IS NOT NULL;
.output stdout
.read :INDEXES.drop.sql

BEGIN;
CREATE TEMP TABLE rejected AS SELECT row_number FROM checked WHERE invalid;
INSERT INTO leads (id, workspace_id, email, first_name, last_name, title, company_name,
                   company_domain, phone, country, source, status, score, tags, search_text,
                   created_at, updated_at)
SELECT CAST(printf('%016d', row_number) AS BLOB), :WS, email, first_name, last_name, title,
       company_name, company_domain, phone, country, source,
       CASE WHEN status = '' THEN 'NEW' ELSE status END,
       CASE WHEN score = '' THEN 0 ELSE CAST(score AS INTEGER) END, tags,
       lower(coalesce(first_name, '') || ' ' || last_name || ' ' || coalesce(email, '') || ' ' || company_name),
       CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) + row_number,
       CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) + row_number
FROM checked
WHERE NOT invalid;
INSERT OR IGNORE INTO lead_tags (workspace_id, tag, lead_id)
SELECT l.workspace_id, t.value, l.id FROM leads l, json_each(l.tags) t
WHERE l.workspace_id = :WS
ORDER BY t.value, l.id;
UPDATE workspaces SET lead_count = (SELECT count(*) FROM leads WHERE workspace_id = :WS)
WHERE id = :WS;
COMMIT;
.read :INDEXES.create.sql
PRAGMA analysis_limit = 1000;
ANALYZE;
SELECT 'floor: ' || (SELECT count(*) FROM leads) || ' leads, ' || (SELECT count(*) FROM rejected) || ' rows rejected';
