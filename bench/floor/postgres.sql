-- The PostgreSQL floor of a CSV import (bench/import_floor.sh): psql's \copy into an unlogged
-- staging table, then one INSERT … SELECT that normalises what leadgate's import normalises
-- (trimmed lower-case emails, one-line cells, bare website hosts, country names to codes,
-- national phone numbers to E.164 by the row's country, statuses, scores, tags), leaves the
-- invalid rows out (their row numbers kept aside) and writes the tag rows from its RETURNING;
-- the indexes of `leads` stay live. Ids ascend with the row, as leadgate's time-ordered ids
-- do. The script substitutes :CSV, :COUNTRIES and :WS (the workspace id).
\set ON_ERROR_STOP on
CREATE UNLOGGED TABLE staging (first_name text, last_name text, email text, company text,
    phone text, country text, title text, website text, status text, source text, score text,
    tags text, row_number bigserial);
-- COPY has no way to skip the export's blank lines: sed drops them on the way in
\copy staging (first_name, last_name, email, company, phone, country, title, website, status, source, score, tags) FROM PROGRAM 'sed -e /^$/d :CSV' WITH (FORMAT csv, HEADER true)
CREATE TEMP TABLE country_map (code text, name text, dial text);
\copy country_map FROM ':COUNTRIES' WITH (FORMAT csv)
CREATE TEMP TABLE country_key (k text PRIMARY KEY, code text, dial text);
INSERT INTO country_key SELECT lower(name), code, dial FROM country_map
    UNION ALL SELECT lower(code), code, dial FROM country_map;
ANALYZE staging;
ANALYZE country_key;
CREATE TEMP TABLE rejected (row_number bigint);

BEGIN;
WITH parsed AS MATERIALIZED (
    SELECT s.row_number,
           nullif(lower(trim(s.email)), '') AS email,
           nullif(trim(replace(s.first_name, E'\n', ' ')), '') AS first_name,
           coalesce(trim(replace(s.last_name, E'\n', ' ')), '') AS last_name,
           nullif(trim(replace(s.title, E'\n', ' ')), '') AS title,
           coalesce(trim(replace(s.company, E'\n', ' ')), '') AS company_name,
           nullif(rtrim(regexp_replace(lower(trim(s.website)), '^https?://(www\.)?', ''), '/'), '') AS company_domain,
           CASE WHEN p.compact LIKE '+%' THEN p.compact
                WHEN p.compact = '' THEN NULL
                WHEN c.dial = '1' AND length(p.compact) = 11 AND p.compact LIKE '1%' THEN '+1' || substr(p.compact, 2)
                WHEN c.code = 'IT' THEN '+' || c.dial || p.compact
                ELSE '+' || c.dial || ltrim(p.compact, '0') END AS phone,
           coalesce(c.code, nullif(trim(s.country), '')) AS country,
           nullif(trim(s.source), '') AS source,
           upper(coalesce(trim(s.status), '')) AS status,
           coalesce(trim(s.score), '') AS score,
           string_to_array(nullif(trim(s.tags), ''), ';') AS tags
    FROM staging s
    CROSS JOIN LATERAL (SELECT translate(coalesce(trim(s.phone), ''), ' -().', '') AS compact) p
    LEFT JOIN country_key c ON c.k = lower(trim(s.country))
    WHERE coalesce(s.first_name, '') <> '' OR coalesce(s.email, '') <> '' OR coalesce(s.company, '') <> ''
), checked AS (
    SELECT *, (email IS NOT NULL AND email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$')
              OR status NOT IN ('', 'NEW', 'CONTACTED', 'QUALIFIED', 'UNQUALIFIED', 'CUSTOMER')
              OR (score <> '' AND (score !~ '^[0-9]{1,3}$' OR score::int > 100))
              OR (country IS NOT NULL AND length(country) <> 2) AS invalid
    FROM parsed
), refused AS (
    INSERT INTO rejected SELECT row_number FROM checked WHERE invalid
), inserted AS (
    INSERT INTO leads (id, workspace_id, email, first_name, last_name, title, company_name,
                       company_domain, phone, country, source, status, score, tags, search_text,
                       created_at, updated_at)
    SELECT lpad(to_hex(row_number), 32, '0')::uuid, ':WS', email, first_name, last_name, title,
           company_name, company_domain, phone, country, source,
           CASE WHEN status = '' THEN 'NEW' ELSE status END,
           CASE WHEN score = '' THEN 0 ELSE score::int END,
           coalesce(to_json(tags)::text, '[]'),
           lower(concat_ws(' ', first_name, last_name, email, company_name)),
           clock_timestamp(), clock_timestamp()
    FROM checked
    WHERE NOT invalid
    ON CONFLICT (workspace_id, email) WHERE email IS NOT NULL DO NOTHING
    RETURNING id, tags
)
INSERT INTO lead_tags (workspace_id, tag, lead_id)
SELECT ':WS', t.tag, i.id FROM inserted i, json_array_elements_text(i.tags::json) AS t(tag)
ON CONFLICT DO NOTHING;
UPDATE workspaces SET lead_count = (SELECT count(*) FROM leads WHERE workspace_id = ':WS') WHERE id = ':WS';
COMMIT;
ANALYZE leads;
ANALYZE lead_tags;
DROP TABLE staging;
SELECT 'floor: ' || (SELECT count(*) FROM leads) || ' leads, ' || (SELECT count(*) FROM rejected) || ' rows rejected';
