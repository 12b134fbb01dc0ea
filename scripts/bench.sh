#!/usr/bin/env bash
# Benchmark (not a test): copies a ~1 GB database with this tool, with
# pg_dump -Fd -j N + pg_restore -j N, and with pgcopydb clone, each into a
# fresh target database on the same throwaway target server, in one run,
# and prints wall time, MB/s, peak RSS and ratios.
#
#   scripts/bench.sh            # ~1 GB, N = number of CPUs
#   SCALE=0.2 JOBS=2 scripts/bench.sh
#
# Needs the PostgreSQL server binaries, pgcopydb and GNU time (installed
# with apt-get when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${SCALE:-1}          # 1 ≈ 1 GB of source data
JOBS=${JOBS:-$(nproc)}
ROUNDS=${ROUNDS:-1}
PGBIN=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need pgcopydb || [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq pgcopydb time >/dev/null
  else echo "install pgcopydb and time: sudo apt-get install pgcopydb time" >&2; exit 1; fi
fi

WORK=$(mktemp -d /tmp/seren-bench.XXXXXX)
chmod 755 "$WORK"
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); chown postgres "$WORK"; fi
cleanup() {
  if [ -n "${KEEP:-}" ]; then echo "kept: $WORK (source port $SP, target port $TP)"; return; fi
  for c in src dst; do
    [ -f "$WORK/$c/postmaster.pid" ] && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$c" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_cluster() { # name port
  "${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/$1" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  cat >>"$WORK/$1/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
wal_level = logical
max_wal_size = 4GB
shared_buffers = 512MB
maintenance_work_mem = 256MB
max_wal_senders = 20
max_replication_slots = 20
fsync = on
synchronous_commit = on
CONF
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w start >/dev/null
}

SP=$(free_port); start_cluster src "$SP"
TP=$(free_port); start_cluster dst "$TP"
SRC="postgres://postgres@127.0.0.1:$SP/bench"
TGT_ADMIN="postgres://postgres@127.0.0.1:$TP/postgres"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== building the binary"
go build -o "$WORK/psr" ./cmd/postgres-seren-replicator

echo "== generating the source (SCALE=$SCALE)"
psql "postgres://postgres@127.0.0.1:$SP/postgres" -c "CREATE DATABASE bench"
gen_start=$(date +%s)
psql "$SRC" -v scale="$SCALE" <<'SQL'
\set big (6000000 * :scale)::int
\set cust (400000 * :scale)::int
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, name text, country char(2), created timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'Customer ' || g, (ARRAY['US','DE','FR','BR','IN'])[1 + g % 5], now() - g * interval '1 minute'
FROM generate_series(1, :cust) g;
CREATE UNIQUE INDEX customers_email ON customers (email);
CREATE TABLE products (id int PRIMARY KEY, sku text UNIQUE, title text, price numeric(10,2), tags text[]);
INSERT INTO products SELECT g, 'SKU-' || g, 'Product ' || md5(g::text), (g % 1000) / 3.0, ARRAY['a' || g % 7, 'b' || g % 11] FROM generate_series(1, 50000) g;
-- The dominant table.
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), product_id int NOT NULL REFERENCES products(id),
  quantity int NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL, note text, created timestamptz NOT NULL);
INSERT INTO orders SELECT g, 1 + g % :cust, 1 + g % 50000, 1 + g % 9, (g % 10000) / 7.0,
  (ARRAY['new','paid','shipped','returned'])[1 + g % 4], CASE WHEN g % 3 = 0 THEN md5(g::text) END, now() - g * interval '1 second'
FROM generate_series(1, :big) g;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_created ON orders (created);
CREATE TABLE events (id bigserial PRIMARY KEY, order_id bigint, kind text, payload jsonb, at timestamptz);
INSERT INTO events (order_id, kind, payload, at) SELECT g, 'e' || g % 13, jsonb_build_object('g', g, 'v', md5(g::text)), now()
FROM generate_series(1, (:big / 6)::int) g;
CREATE INDEX events_order ON events (order_id);
-- Many small tables of varied sizes.
SELECT set_config('bench.scale', :'scale', false) \gset
DO $$ BEGIN FOR i IN 1..40 LOOP
  EXECUTE format('CREATE TABLE small_%s (id int PRIMARY KEY, v text, n int)', i);
  EXECUTE format('INSERT INTO small_%s SELECT g, md5(g::text), g %% 100 FROM generate_series(1, %s) g', i, (i * i * 50 * current_setting('bench.scale', true)::numeric)::int + 10);
  EXECUTE format('CREATE INDEX ON small_%s (n)', i);
END LOOP; END $$;
VACUUM ANALYZE;
SQL
SIZE=$(psql "$SRC" -Atc "SELECT pg_database_size('bench')")
echo "source database: $((SIZE / 1048576)) MB, generated in $(( $(date +%s) - gen_start )) s; jobs = $JOBS"

fresh_target() { # db
  psql "$TGT_ADMIN" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CHECKPOINT"
}
results=()
run() { # name, then the command (timed with GNU time)
  local name=$1; shift
  sync; psql "$TGT_ADMIN" -c CHECKPOINT
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >"$WORK/$name.log" 2>&1 || { echo "$name failed:"; tail -20 "$WORK/$name.log"; exit 1; }
  end=$(date +%s.%N)
  local secs rss
  secs=$(echo "$end - $start" | bc -l)
  rss=$(tail -1 "$WORK/rss")
  results+=("$name $secs $rss")
  printf "  %-28s %7.1f s  %7.1f MB/s  peak RSS %6.1f MB\n" "$name" "$secs" "$(echo "$SIZE / 1048576 / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

ours() {
  fresh_target bench
  run "postgres-seren-replicator" "$WORK/psr" init --source "$SRC" --target "$TGT_ADMIN" --include-databases bench --no-sync --yes --jobs "$JOBS"
  grep -A20 "WALL TIME" "$WORK/postgres-seren-replicator.log" | sed 's/^/      /'
}
dumprestore() {
  fresh_target bench
  rm -rf "$WORK/dump"
  cat >"$WORK/dumprestore.sh" <<SH
set -e
"$PGBIN/pg_dump" -Fd -j $JOBS -f "$WORK/dump" "$SRC"
"$PGBIN/createdb" -h 127.0.0.1 -p $TP -U postgres bench
"$PGBIN/pg_restore" -j $JOBS -d "postgres://postgres@127.0.0.1:$TP/bench" "$WORK/dump"
SH
  run "pg_dump -Fd + pg_restore" bash "$WORK/dumprestore.sh"
}
pgcopydb_clone() {
  fresh_target bench
  psql "$TGT_ADMIN" -c "CREATE DATABASE bench"
  rm -rf "$WORK/pgcopydb"
  run "pgcopydb clone" pgcopydb clone --source "$SRC" --target "postgres://postgres@127.0.0.1:$TP/bench" \
    --table-jobs "$JOBS" --index-jobs "$JOBS" --dir "$WORK/pgcopydb" --no-owner --no-acl
}

if [ -n "${ONLY_SETUP:-}" ]; then echo "source $SRC target $TGT_ADMIN"; exit 0; fi
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  ours; dumprestore; pgcopydb_clone
done

echo
echo "== summary (median of $ROUNDS round(s); lower is better)"
python3 - "$SIZE" "${results[@]}" <<'PY'
import statistics, sys
size = int(sys.argv[1]); rows = [r.rsplit(' ', 2) for r in sys.argv[2:]]
by = {}
for name, secs, rss in rows:
    by.setdefault(name, []).append((float(secs), int(rss)))
med = {n: (statistics.median(s for s, _ in v), max(r for _, r in v)) for n, v in by.items()}
ours = med["postgres-seren-replicator"][0]
print(f"| tool | wall time | MB/s | peak RSS | time vs pgcopydb |")
print(f"|---|---|---|---|---|")
for n, (s, r) in med.items():
    print(f"| {n} | {s:.1f} s | {size/1048576/s:.1f} | {r/1024:.0f} MB | {s/med['pgcopydb clone'][0]:.2f} |")
print(f"\nratio postgres-seren-replicator / pgcopydb = {ours/med['pgcopydb clone'][0]:.2f} (required < 1.0, goal <= 0.8)")
print(f"ratio postgres-seren-replicator / pg_dump+pg_restore = {ours/med['pg_dump -Fd + pg_restore'][0]:.2f}")
PY
