-- A database holding every kind of object PRODUCT.md lists under "Faithful".
-- {{owner}} and {{reader}} are replaced by per-test role names.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS hstore;

CREATE SCHEMA "Odd Schema ""quoted""" AUTHORIZATION {{owner}};
COMMENT ON SCHEMA "Odd Schema ""quoted""" IS 'a schema with spaces and quotes';
CREATE SCHEMA app AUTHORIZATION {{owner}};
SET ROLE {{owner}};

CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
CREATE TYPE app.address AS (street text, zip varchar(10));
CREATE TYPE app.floatrange AS RANGE (subtype = float8);
COMMENT ON TYPE app.mood IS 'feelings';

CREATE TABLE app.customers (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email     text NOT NULL UNIQUE,
  name      text,
  mood      app.mood DEFAULT 'ok',
  score     app.positive,
  home      app.address,
  tags      text[],
  moods     app.mood[],
  prefs     jsonb,
  attrs     hstore,
  avatar    bytea,
  born      date,
  ratio     numeric(10,4),
  seen_at   timestamptz DEFAULT now(),
  spans     app.floatrange,
  name_len  int GENERATED ALWAYS AS (length(name)) STORED
);
COMMENT ON TABLE app.customers IS 'people who pay';
COMMENT ON COLUMN app.customers.email IS 'unique login';
CREATE INDEX customers_name_idx ON app.customers (lower(name)) WHERE name IS NOT NULL;
CREATE INDEX customers_prefs_gin ON app.customers USING gin (prefs);

CREATE TABLE app.orders (
  id          serial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES app.customers(id) ON DELETE CASCADE,
  total       numeric(12,2) CHECK (total >= 0),
  placed      timestamp NOT NULL DEFAULT '2024-01-01',
  note        text
);
CREATE INDEX orders_customer_idx ON app.orders (customer_id, placed DESC);
ALTER TABLE app.orders ADD CONSTRAINT orders_note_len CHECK (length(note) < 1000) NOT VALID;

-- No primary key, with duplicate rows.
CREATE TABLE app.events_log (kind text, payload jsonb, at timestamptz);

-- Partitioned table with a key and an index.
CREATE TABLE app.measurements (
  id bigint NOT NULL, taken date NOT NULL, value double precision,
  PRIMARY KEY (id, taken)
) PARTITION BY RANGE (taken);
CREATE TABLE app.measurements_2023 PARTITION OF app.measurements FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE app.measurements_2024 PARTITION OF app.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX measurements_value_idx ON app.measurements (value);

CREATE TABLE "Odd Schema ""quoted"""."Mixed Case ""Table""" ("Weird Col" text PRIMARY KEY, "select" int);
CREATE TABLE app.unlogged_cache (k text PRIMARY KEY, v text) ;
ALTER TABLE app.unlogged_cache SET UNLOGGED;

CREATE SEQUENCE app.invoice_no START 1000 INCREMENT 7;
CREATE TABLE app.invoices (no int PRIMARY KEY DEFAULT nextval('app.invoice_no'), body text);
ALTER SEQUENCE app.invoice_no OWNED BY app.invoices.no;

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.seen_at := now(); RETURN NEW; END $$;
COMMENT ON FUNCTION app.touch() IS 'sets seen_at';
CREATE TRIGGER customers_touch BEFORE UPDATE ON app.customers FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.order_count(c bigint) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM app.orders WHERE customer_id = c $$;
CREATE PROCEDURE app.noop(x int) LANGUAGE plpgsql AS $$ BEGIN PERFORM x; END $$;

CREATE VIEW app.big_customers AS SELECT c.id, c.email, app.order_count(c.id) AS n FROM app.customers c WHERE c.score > 10;
COMMENT ON VIEW app.big_customers IS 'customers with a high score';
CREATE MATERIALIZED VIEW app.order_totals AS SELECT customer_id, sum(total) AS total, count(*) AS n FROM app.orders GROUP BY customer_id;
CREATE UNIQUE INDEX order_totals_pk ON app.order_totals (customer_id);

ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_reader ON app.orders FOR SELECT TO {{reader}} USING (total < 1000);

-- Version-dependent objects (the version matrix runs this on 12–15 sources).
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 140000 THEN
    -- 14+: multiranges (every range type brings one).
    EXECUTE 'CREATE TABLE app.bookings (id int PRIMARY KEY, busy app.floatmultirange, during datemultirange)';
    EXECUTE $q$INSERT INTO app.bookings SELECT g, app.floatmultirange(app.floatrange(g, g + 1), app.floatrange(g + 5, NULL)),
      datemultirange(daterange(date '2024-01-01' + g, date '2024-01-03' + g)) FROM generate_series(1, 300) g$q$;
  END IF;
  IF current_setting('server_version_num')::int >= 150000 THEN
    -- 15+: unique constraints where NULLs collide.
    EXECUTE 'CREATE TABLE app.seats (row_no int, seat text, CONSTRAINT seats_unique UNIQUE NULLS NOT DISTINCT (row_no, seat))';
    EXECUTE $q$INSERT INTO app.seats VALUES (1, 'a'), (1, NULL), (NULL, NULL), (2, 'b')$q$;
  END IF;
END $$;

RESET ROLE;
GRANT USAGE ON SCHEMA app TO {{reader}};
GRANT SELECT ON app.customers, app.orders TO {{reader}};
GRANT SELECT (body) ON app.invoices TO {{reader}};
GRANT EXECUTE ON FUNCTION app.order_count(bigint) TO {{reader}};
REVOKE EXECUTE ON FUNCTION app.touch() FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE {{owner}} IN SCHEMA app GRANT SELECT ON TABLES TO {{reader}};

-- Data.
INSERT INTO app.customers (email, name, mood, score, home, tags, moods, prefs, attrs, avatar, born, ratio, spans)
SELECT 'user' || g || '@example.com',
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'Name ' || g || E' with \t tab, "quotes", \\ and ünïcödé' END,
       (ARRAY['sad','ok','happy'])[1 + g % 3]::app.mood, 1 + g % 50,
       ROW('Street ' || g, lpad((g % 99999)::text, 5, '0'))::app.address,
       ARRAY['t' || g % 5, NULL, 'x,y'], ARRAY['ok', 'happy']::app.mood[],
       jsonb_build_object('n', g, 'nested', jsonb_build_object('a', ARRAY[1, 2, g])),
       hstore('k' || g % 3, 'v' || g),
       CASE WHEN g % 7 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') || '\x00ff'::bytea END,
       date '2000-01-01' + g, g / 7.0, numrange(0, g)::text::app.floatrange
FROM generate_series(1, 3000) g;
INSERT INTO app.orders (customer_id, total, placed, note)
SELECT 1 + g % 3000, (g % 500) * 1.25, timestamp '2024-01-01' + g * interval '1 hour', CASE WHEN g % 4 = 0 THEN 'note ' || g END
FROM generate_series(1, 9000) g;
INSERT INTO app.events_log SELECT 'dup', '{"a":1}', timestamptz '2024-05-05 12:00+00' FROM generate_series(1, 5);
INSERT INTO app.events_log SELECT 'ev' || g % 3, jsonb_build_object('g', g), timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, 500) g;
INSERT INTO app.events_log VALUES (NULL, NULL, NULL), (NULL, NULL, NULL);
INSERT INTO app.measurements SELECT g, date '2023-06-01' + (g % 400), g * 0.5 FROM generate_series(1, 4000) g;
INSERT INTO "Odd Schema ""quoted"""."Mixed Case ""Table""" VALUES ('a b', 1), ('c"d', 2), (E'e\nf', NULL);
INSERT INTO app.unlogged_cache VALUES ('k', 'v');
INSERT INTO app.invoices (body) SELECT 'invoice ' || g FROM generate_series(1, 25) g;
SELECT setval('app.orders_id_seq', 9500);
SELECT lo_from_bytea(0, 'large object contents '::bytea || decode(repeat('ab', 5000), 'hex'));
REFRESH MATERIALIZED VIEW app.order_totals;
ALTER DATABASE CURRENT_DB_PLACEHOLDER SET work_mem = '8MB';
COMMENT ON DATABASE CURRENT_DB_PLACEHOLDER IS 'fixture database';
