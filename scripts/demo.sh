#!/usr/bin/env bash
# The README's main job, on this machine, in one command:
#
#   scripts/demo.sh
#
# It builds postgres-seren-replicator, starts two throwaway PostgreSQL
# clusters (a source with sample data in two databases, and an empty
# target), starts the job service (`serve`) on a temporary data directory,
# creates an API key, submits `init` through the service's API (the
# binary's remote init: copy, then continuous sync), follows it to the end,
# writes to the source and checks the change arrives, runs `verify`, prints
# a summary, and removes everything it created.
#
# Works as root (the servers then run as the `postgres` OS user) and as a
# normal user. Needs Go (or BIN=/path/to/postgres-seren-replicator) and
# the PostgreSQL server binaries (as root on Debian/Ubuntu they are
# installed if missing). KEEP=1 keeps the work directory and leaves nothing
# running.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"
DBS="shop analytics"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

# --- prerequisites -----------------------------------------------------------
find_pg_bin() {
	local d best="" bestv=0 v
	for d in /usr/lib/postgresql/*/bin /usr/pgsql-*/bin /opt/homebrew/opt/postgresql*/bin /usr/local/opt/postgresql*/bin; do
		[ -x "$d/initdb" ] || continue
		v=$(basename "$(dirname "$d")" | tr -dc '0-9')
		v=${v:-0}
		if [ "$v" -gt "$bestv" ] || [ -z "$best" ]; then best=$d bestv=$v; fi
	done
	if [ -z "$best" ] && command -v initdb >/dev/null 2>&1; then best=$(dirname "$(command -v initdb)"); fi
	if [ -z "$best" ] && command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then best=$(pg_config --bindir); fi
	echo "$best"
}

PG_BIN=$(find_pg_bin)
if [ -z "$PG_BIN" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "Installing the PostgreSQL server (apt-get install postgresql-15)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null 2>&1 ||
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
		PG_BIN=$(find_pg_bin)
	fi
	[ -n "$PG_BIN" ] || die "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql) and run again."
fi
for tool in pg_dump pg_restore psql; do
	[ -x "$PG_BIN/$tool" ] || command -v "$tool" >/dev/null 2>&1 || die "$tool not found next to $PG_BIN/initdb or on PATH"
done
export PATH="$PG_BIN:$PATH"

AS_PG=()
if [ "$(id -u)" = 0 ]; then
	# PostgreSQL refuses to run as root: run the servers as `postgres`.
	if ! id postgres >/dev/null 2>&1; then
		useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres 2>/dev/null ||
			die "running as root: create a 'postgres' OS user for the servers (useradd --system postgres)"
	fi
	if command -v runuser >/dev/null 2>&1; then
		AS_PG=(runuser -u postgres --)
	else
		AS_PG=(su postgres -s /bin/sh -c)
	fi
fi
as_pg() {
	if [ ${#AS_PG[@]} -eq 0 ]; then
		"$@"
	elif [ "${AS_PG[0]}" = su ]; then
		"${AS_PG[@]}" "$(printf '%q ' "$@")"
	else
		"${AS_PG[@]}" "$@"
	fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/seren-demo.XXXXXX")
chmod 755 "$WORK"
SERVE_PID=""
CLUSTERS=()
cleanup() {
	local code=$?
	set +e
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill -TERM "$SERVE_PID"
		wait "$SERVE_PID" 2>/dev/null
	fi
	# Target first: its subscription would otherwise retry against a gone source.
	for ((i = ${#CLUSTERS[@]} - 1; i >= 0; i--)); do
		as_pg "$PG_BIN/pg_ctl" -D "${CLUSTERS[$i]}/data" -m fast -w stop >/dev/null 2>&1
	done
	if [ "${KEEP:-}" = 1 ]; then
		echo "Kept $WORK (servers stopped)."
	else
		rm -rf "$WORK"
	fi
	exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ---------------------------------------------------------------------
say "Building postgres-seren-replicator"
if [ -n "${BIN:-}" ]; then
	[ -x "$BIN" ] || die "BIN=$BIN is not an executable"
else
	command -v go >/dev/null 2>&1 || die "Go is not installed (https://go.dev/dl/), or pass BIN=/path/to/postgres-seren-replicator"
	BIN="$WORK/postgres-seren-replicator"
	(cd "$REPO" && go build -o "$BIN" ./cmd/postgres-seren-replicator)
fi
"$BIN" version || true

# --- two PostgreSQL clusters ----------------------------------------------------
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free TCP port found"
}

PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_cluster() { # name port
	local dir="$WORK/$1" port=$2
	mkdir -p "$dir"
	printf '%s\n' "$PASSWORD" >"$dir/pwfile"
	chmod 600 "$dir/pwfile"
	if [ ${#AS_PG[@]} -gt 0 ]; then chown -R postgres "$dir"; fi
	as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" -A scram-sha-256 --auth-local=trust \
		-E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		die "initdb failed for the $1 cluster"
	}
	rm -f "$dir/pwfile"
	as_pg sh -c "cat >> '$dir/data/postgresql.conf'" <<-EOF
		port = $port
		listen_addresses = '127.0.0.1'
		unix_socket_directories = '$dir'
		wal_level = logical
		max_replication_slots = 20
		max_wal_senders = 20
		max_logical_replication_workers = 8
		max_worker_processes = 16
		fsync = off
	EOF
	as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null || {
		cat "$dir/server.log" >&2
		die "the $1 cluster did not start"
	}
	CLUSTERS+=("$dir")
}

say "Starting two throwaway PostgreSQL servers ($PG_BIN)"
SRC_PORT=$(free_port)
start_cluster source "$SRC_PORT"
DST_PORT=$(free_port)
while [ "$DST_PORT" = "$SRC_PORT" ]; do DST_PORT=$(free_port); done
start_cluster target "$DST_PORT"
SRC="postgresql://postgres:$PASSWORD@127.0.0.1:$SRC_PORT/postgres"
DST="postgresql://postgres:$PASSWORD@127.0.0.1:$DST_PORT/postgres"
echo "source: postgresql://postgres:xxxxx@127.0.0.1:$SRC_PORT   target: postgresql://postgres:xxxxx@127.0.0.1:$DST_PORT"

sql() { # port db sql...
	PGPASSWORD="$PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" "${@:3}"
}

say "Loading sample data into the source (databases: $DBS)"
sql "$SRC_PORT" postgres -c "CREATE DATABASE shop" -c "CREATE DATABASE analytics"
sql "$SRC_PORT" shop <<'SQL'
CREATE TYPE order_state AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE customers (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE products (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL, tags text[]);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, state order_state NOT NULL DEFAULT 'new',
                     total numeric(12,2) NOT NULL, details jsonb, placed_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
INSERT INTO customers (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 5000) g;
INSERT INTO products (name, price, tags) SELECT 'product ' || g, (g % 97) + 0.99, ARRAY['t' || (g % 5)] FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, state, total, details)
  SELECT 1 + g % 5000, (ARRAY['new','paid','shipped']::order_state[])[1 + g % 3], (g % 1000) + 0.5, jsonb_build_object('items', g % 9)
  FROM generate_series(1, 50000) g;
SQL
sql "$SRC_PORT" analytics <<'SQL'
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text NOT NULL, payload jsonb, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE daily (day date PRIMARY KEY, visits int NOT NULL);
INSERT INTO events (kind, payload) SELECT 'kind' || (g % 12), jsonb_build_object('n', g) FROM generate_series(1, 100000) g;
INSERT INTO daily SELECT current_date - g, g * 10 FROM generate_series(0, 364) g;
SQL

# --- the job service ---------------------------------------------------------------
say "Starting the job service (serve) and creating an API key"
DATA="$WORK/service"
API_KEY=$("$BIN" keys create --data-dir "$DATA" --name demo 2>/dev/null | tail -n1)
"$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 --allow-networks 127.0.0.0/8 >"$WORK/serve.url" 2>"$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 1 100); do
	[ -s "$WORK/serve.url" ] && break
	kill -0 "$SERVE_PID" 2>/dev/null || {
		cat "$WORK/serve.log" >&2
		die "serve did not start"
	}
	sleep 0.1
done
API=$(head -n1 "$WORK/serve.url")
[ -n "$API" ] || die "serve printed no URL"
echo "job service: $API (data directory $DATA)"

# --- init through the API ----------------------------------------------------------
say "Submitting init through the job service and following it"
export SEREN_REMOTE_API="$API" SEREN_API_KEY="$API_KEY"
# Credentials go by environment, never on a command line.
export SEREN_SOURCE_URL="$SRC" SEREN_TARGET_URL="$DST"
START=$(date +%s)
"$BIN" init --include-databases shop,analytics --yes | tee "$WORK/init.out"
INIT_SECONDS=$(($(date +%s) - START))
JOB_ID=$(sed -n 's/^Job ID: //p' "$WORK/init.out")

say "Writing to the source while sync runs"
sql "$SRC_PORT" shop -c "INSERT INTO orders (customer_id, total) SELECT 1 + g % 5000, 42 FROM generate_series(1, 1000) g"
sql "$SRC_PORT" analytics -c "DELETE FROM events WHERE id % 10 = 0"
"$BIN" status --include-databases shop,analytics || true

# --- verify ----------------------------------------------------------------------
say "Verifying the target against the source"
VERIFIED=""
if "$BIN" verify --help >/dev/null 2>&1; then
	"$BIN" verify --include-databases shop,analytics && VERIFIED="verify: identical"
else
	ok=true
	for spec in shop:customers shop:products shop:orders analytics:events analytics:daily; do
		db=${spec%%:*} table=${spec#*:}
		s=$(sql "$SRC_PORT" "$db" -tA -c "SELECT count(*) FROM $table")
		d=$(sql "$DST_PORT" "$db" -tA -c "SELECT count(*) FROM $table")
		echo "$db.$table: source $s rows, target $d rows"
		[ "$s" = "$d" ] || ok=false
	done
	$ok && VERIFIED="row counts match"
fi
[ -n "$VERIFIED" ] || die "the target differs from the source"

# --- summary -----------------------------------------------------------------------
say "Summary"
"$BIN" jobs show "$JOB_ID"
echo
printf '%-22s %12s %12s\n' TABLE SOURCE TARGET
for spec in shop:customers shop:products shop:orders analytics:events analytics:daily; do
	db=${spec%%:*} table=${spec#*:}
	printf '%-22s %12s %12s\n' "$db.$table" \
		"$(sql "$SRC_PORT" "$db" -tA -c "SELECT count(*) FROM $table")" \
		"$(sql "$DST_PORT" "$db" -tA -c "SELECT count(*) FROM $table")"
done
echo
echo "init through the job service took ${INIT_SECONDS}s; later writes replicated; $VERIFIED."
echo "Demo complete: cleaning up."
