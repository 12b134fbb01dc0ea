#!/usr/bin/env bash
# Benchmark (not a test) of continuous sync under a write load. In one run,
# on two throwaway PostgreSQL clusters (source with wal_level=logical, and a
# target), it runs the same pgbench tpcb-like load on the source in ROUNDS
# rounds (default 2: baseline, ours, native, then native, ours, baseline):
#
#   baseline  no replication at all;
#   ours      after `postgres-seren-replicator init` (sync on, the default),
#             then `cutover` to clean up;
#   native    logical replication set up by hand: CREATE PUBLICATION FOR ALL
#             TABLES, pg_dump --schema-only | psql, CREATE SUBSCRIPTION with
#             copy_data = true, wait until every table is 'r'.
#
# Every variant starts from the same source state (empty pgbench_history,
# VACUUM ANALYZE, CHECKPOINT) and a fresh target database. It prints, per
# variant (TPS and latency the mean of the rounds, lag percentiles over the
# samples of all rounds):
#
#   TPS, latency  pgbench's figures on the source (replication costs the
#                 source the decoding walsender's CPU and I/O).
#   lag bytes     pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)
#                 of the replication slot, sampled every INTERVAL s during the
#                 load; p50/p99 of the samples. confirmed_flush_lsn is what the
#                 subscriber has flushed to disk (subscriptions commit with
#                 synchronous_commit = off, so it trails the apply by up to
#                 ~wal_writer_delay).
#   lag s         the age of the confirmed position: how long ago the source's
#                 WAL position was where the subscriber has now confirmed,
#                 interpolated from the same samples (0 when caught up). Its
#                 resolution is about INTERVAL. The target's pg_stat_subscription
#                 times (now() - last_msg_receipt_time / latest_end_time) are
#                 sampled too and printed in a second table with the source's
#                 pg_stat_replication.flush_lag, but they say how recently the
#                 worker heard from the walsender, not how far behind it is:
#                 under a steady load they stay near 0 whatever the lag.
#   to zero lag   from the end of pgbench until confirmed_flush_lsn reaches the
#                 source's pg_current_wal_lsn() taken when pgbench ended. Once
#                 applied, the subscriber reports its flushed position when
#                 the walsender pings it or about once a second, so expect a
#                 floor of several hundred ms for both variants.
#
# Limits: source, target, the subscriber's apply worker and pgbench all share
# this machine's CPUs and disk (and anything else running on it), so the TPS
# drop with replication on includes the target's apply work competing for the
# same cores, and the lag has no network in it. The runs are short and the
# machine may be busy with other work (the summary prints the load average):
# treat differences within the spread of the per-round TPS as noise, and
# repeat the run if a figure matters. Both replication variants
# stream through a plain PostgreSQL subscription with default options, so
# ours vs native shows what our set-up costs or leaves behind, not a
# different apply path.
#
#   scripts/bench-sync.sh                              # scale 20, 4 clients, 2 x 20 s per variant (~4 min)
#   SCALE=2 DURATION=5 ROUNDS=1 scripts/bench-sync.sh  # quick
#   KEEP=1 scripts/bench-sync.sh                       # keep clusters, samples and logs
#
# Needs the PostgreSQL server binaries and pgbench; runs the clusters as the
# postgres OS user when started as root.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${SCALE:-20}
CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-2}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-2}
INTERVAL=${INTERVAL:-0.25}
PGBIN=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

WORK=$(mktemp -d /tmp/seren-bench-sync.XXXXXX)
chmod 755 "$WORK"
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); chown postgres "$WORK"; fi
SAMPLERS=()
cleanup() {
  for p in "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "kept: $WORK (source port ${SP:-}, target port ${TP:-})"; return; fi
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
shared_buffers = 256MB
max_wal_senders = 20
max_replication_slots = 20
max_logical_replication_workers = 8
fsync = on
synchronous_commit = on
CONF
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w start >/dev/null
}

SP=$(free_port); start_cluster src "$SP"
TP=$(free_port); start_cluster dst "$TP"
SRC="postgres://postgres@127.0.0.1:$SP/bench"
SRC_ADMIN="postgres://postgres@127.0.0.1:$SP/postgres"
TGT="postgres://postgres@127.0.0.1:$TP/bench"
TGT_ADMIN="postgres://postgres@127.0.0.1:$TP/postgres"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== building the binary"
go build -o "$WORK/psr" ./cmd/postgres-seren-replicator

echo "== pgbench -i -s $SCALE on the source"
psql "$SRC_ADMIN" -c "CREATE DATABASE bench"
"$PGBIN/pgbench" -i -q -s "$SCALE" "$SRC" >"$WORK/pgbench-init.log" 2>&1
# Waits, in the source server, until slot's confirmed_flush_lsn reaches upto;
# returns the clock at that moment (NULL on timeout).
psql "$SRC_ADMIN" <<'SQL'
CREATE FUNCTION bench_wait(slot text, upto pg_lsn, timeout float8) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE deadline timestamptz := clock_timestamp() + timeout * interval '1 second';
BEGIN
  LOOP
    IF (SELECT confirmed_flush_lsn >= upto FROM pg_replication_slots WHERE slot_name = slot) THEN
      RETURN extract(epoch FROM clock_timestamp());
    END IF;
    IF clock_timestamp() > deadline THEN RETURN NULL; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SQL
echo "source database: $(( $(psql "$SRC" -Atc "SELECT pg_database_size('bench')") / 1048576 )) MB; load: pgbench -c $CLIENTS -j $THREADS -T $DURATION (tpcb-like)"

# Every variant starts from the same state: an empty history table, vacuumed
# and checkpointed on both sides.
reset_source() {
  psql "$SRC" -c "TRUNCATE pgbench_history" -c "VACUUM ANALYZE"
  psql "$SRC_ADMIN" -c CHECKPOINT
}
fresh_target() {
  psql "$TGT_ADMIN" -c "DROP DATABASE IF EXISTS bench WITH (FORCE)" -c CHECKPOINT
}

# sample NAME SLOT SUBSCRIPTION: starts the samplers on both sides.
sample() {
  # psql itself (not the psql function) so that $! is its pid for SIGINT.
  command psql -X -q "$SRC_ADMIN" -At -F ' ' >"$WORK/$1.src" 2>"$WORK/$1.src.err" <<SQL &
SELECT extract(epoch FROM clock_timestamp()), pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),
  pg_wal_lsn_diff(s.confirmed_flush_lsn, '0/0'), coalesce(extract(epoch FROM r.flush_lag)::text, '-')
FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = '$2' \watch $INTERVAL
SQL
  SAMPLERS+=($!)
  command psql -X -q "$TGT" -At -F ' ' >"$WORK/$1.dst" 2>"$WORK/$1.dst.err" <<SQL &
SELECT extract(epoch FROM clock_timestamp()), coalesce(extract(epoch FROM now() - last_msg_receipt_time)::text, '-'),
  coalesce(extract(epoch FROM now() - latest_end_time)::text, '-')
FROM pg_stat_subscription WHERE subname = '$3' AND relid IS NULL \watch $INTERVAL
SQL
  SAMPLERS+=($!)
}
stop_samplers() { # SIGINT ends \watch; psql then reads EOF and exits
  for p in "${SAMPLERS[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  SAMPLERS=()
}

wait_caught_up() { # slot timeout -> epoch when caught up, or empty
  psql "$SRC_ADMIN" -Atc "SELECT bench_wait('$1', pg_current_wal_lsn(), $2)"
}

# load NAME [SLOT SUBSCRIPTION]: the pgbench run, sampled when replicating.
load() {
  local name=$1 slot=${2:-} sub=${3:-}
  if [ -n "$slot" ]; then
    [ -n "$(wait_caught_up "$slot" 120)" ] || { echo "$name: the subscriber did not catch up before the load"; exit 1; }
    sample "$name" "$slot" "$sub"
    sleep 1
  fi
  local t0 t1 caught=""
  t0=$(now)
  "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -P 5 "$SRC" >"$WORK/$name.pgbench" 2>&1 ||
    { echo "$name: pgbench failed:"; tail -20 "$WORK/$name.pgbench"; exit 1; }
  t1=$(now)
  if [ -n "$slot" ]; then
    caught=$(wait_caught_up "$slot" 300)
    sleep 0.5
    stop_samplers
  fi
  local tps lat
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/$name.pgbench" | tail -1)
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$WORK/$name.pgbench")
  printf 'name=%s\ntps=%s\nlat=%s\nt0=%s\nt1=%s\ncaught=%s\nsetup=%s\n' "$name" "$tps" "$lat" "$t0" "$t1" "$caught" "${SETUP:-}" >"$WORK/$name.meta"
  printf "  %-11s %8.1f TPS  latency %6.2f ms" "$name" "$tps" "$lat"
  if [ -n "$slot" ]; then
    if [ -n "$caught" ]; then printf "  zero lag %.2f s after the load" "$(echo "$caught - $t1" | bc -l)"; else printf "  lag not zero 300 s after the load"; fi
  fi
  echo
}

baseline() { # run
  echo "== baseline (round $1): no replication"
  reset_source
  SETUP=
  load "baseline.$1"
}

ours() { # run
  echo "== ours (round $1): postgres-seren-replicator init (sync on), load, cutover"
  reset_source
  fresh_target
  local s slot left
  s=$(now)
  "$WORK/psr" init --source "$SRC" --target "$TGT_ADMIN" --include-databases bench --yes >"$WORK/ours.$1-init.log" 2>&1 ||
    { echo "init failed:"; tail -30 "$WORK/ours.$1-init.log"; exit 1; }
  SETUP=$(echo "$(now) - $s" | bc -l)
  slot=$(psql "$SRC_ADMIN" -Atc "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'seren\_%' AND database = 'bench'")
  [ -n "$slot" ] || { echo "no seren_ slot after init"; exit 1; }
  psql "$TGT_ADMIN" -c CHECKPOINT
  printf "  init (copy + sync set-up): %.1f s, slot %s\n" "$SETUP" "$slot"
  load "ours.$1" "$slot" "$slot"
  "$WORK/psr" cutover --source "$SRC" --target "$TGT_ADMIN" --include-databases bench --timeout 2m --yes >"$WORK/ours.$1-cutover.log" 2>&1 ||
    { echo "cutover failed:"; tail -30 "$WORK/ours.$1-cutover.log"; exit 1; }
  left=$(psql "$SRC_ADMIN" -Atc "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'seren\_%'")
  [ "$left" = 0 ] || { echo "cutover left $left seren_ slot(s) on the source"; exit 1; }
  echo "  cutover: $(grep -o 'Writes had to pause for [^ ]*' "$WORK/ours.$1-cutover.log"), no slot left"
}

native() { # run
  echo "== native (round $1): publication, schema by pg_dump, subscription with copy_data, load"
  reset_source
  fresh_target
  local s deadline
  s=$(now)
  psql "$SRC" -c "CREATE PUBLICATION bench_native FOR ALL TABLES"
  psql "$TGT_ADMIN" -c "CREATE DATABASE bench"
  "$PGBIN/pg_dump" --schema-only --no-publications --no-subscriptions "$SRC" | psql "$TGT" >/dev/null
  psql "$TGT" -c "CREATE SUBSCRIPTION bench_native CONNECTION 'host=127.0.0.1 port=$SP dbname=bench user=postgres' PUBLICATION bench_native WITH (copy_data = true)"
  deadline=$(( $(date +%s) + 600 ))
  until [ "$(psql "$TGT" -Atc "SELECT count(*) > 0 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel")" = t ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "native: tables not ready after 600 s"; exit 1; }
    sleep 0.2
  done
  SETUP=$(echo "$(now) - $s" | bc -l)
  psql "$TGT_ADMIN" -c CHECKPOINT
  printf "  set-up until every table is 'r': %.1f s\n" "$SETUP"
  load "native.$1" bench_native bench_native
  psql "$TGT" -c "DROP SUBSCRIPTION bench_native"
  psql "$SRC" -c "DROP PUBLICATION bench_native"
}

# Odd rounds run baseline, ours, native; even rounds the reverse, so that a
# machine getting busier or quieter during the run weighs on every variant
# alike when ROUNDS is even.
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then baseline "$r"; ours "$r"; native "$r"
  else native "$r"; ours "$r"; baseline "$r"; fi
done

echo
echo "== summary: $ROUNDS round(s) of pgbench -c $CLIENTS -j $THREADS -T $DURATION at scale $SCALE, lag sampled every $INTERVAL s;" \
  "$(nproc) CPUs, load average at start $LOAD0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK" "$ROUNDS" <<'PY'
import os, statistics, sys

work, rounds = sys.argv[1], int(sys.argv[2])

def meta(name):
    d = {}
    with open(os.path.join(work, name + ".meta")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            d[k] = v
    return d

def rows(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            p = line.split()
            try:
                float(p[0])
            except (IndexError, ValueError):
                continue
            out.append(p)
    return out

def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    i = q / 100 * (len(xs) - 1)
    lo = int(i)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)

def run(name):
    m = meta(name)
    t0, t1 = float(m["t0"]), float(m["t1"])
    r = dict(tps=float(m["tps"]), lat=float(m["lat"]), lag_b=[], lag_s=[], flush=[], receipt=[], end=[],
             caught=float(m["caught"]) - t1 if m.get("caught") else None,
             setup=float(m["setup"]) if m.get("setup") else None)
    src = [(float(a), float(b), float(c), d) for a, b, c, d in rows(os.path.join(work, name + ".src"))]
    for i, (t, cur, conf, fl) in enumerate(src):
        if not t0 <= t <= t1:
            continue
        r["lag_b"].append(max(0.0, cur - conf))
        if fl != "-":
            r["flush"].append(float(fl))
        if conf >= cur:
            r["lag_s"].append(0.0)
            continue
        # When was the source's WAL position where the subscriber is now?
        j = next((k for k in range(i + 1) if src[k][1] >= conf), None)
        if not j:
            r["lag_s"].append(t - src[0][0])  # before the first sample: a lower bound
            continue
        (ta, ca), (tb, cb) = src[j - 1][:2], src[j][:2]
        at = ta + (tb - ta) * (conf - ca) / (cb - ca) if cb > ca else tb
        r["lag_s"].append(max(0.0, t - at))
    for p in rows(os.path.join(work, name + ".dst")):
        if t0 <= float(p[0]) <= t1:
            if p[1] != "-":
                r["receipt"].append(float(p[1]))
            if p[2] != "-":
                r["end"].append(float(p[2]))
    return r

def variant(v):
    runs = [run(f"{v}.{i}") for i in range(1, rounds + 1)]
    pooled = {k: [x for r in runs for x in r[k]] for k in ("lag_b", "lag_s", "flush", "receipt", "end")}
    caught = [r["caught"] for r in runs]
    setup = [r["setup"] for r in runs if r["setup"] is not None]
    return dict(runs=runs, tps=statistics.mean(r["tps"] for r in runs), lat=statistics.mean(r["lat"] for r in runs),
                tps_all=[r["tps"] for r in runs], caught=None if None in caught else statistics.mean(caught),
                caught_max=None if None in caught else max(caught), setup=statistics.mean(setup) if setup else None, **pooled)

V = {v: variant(v) for v in ("baseline", "ours", "native")}
btps = V["baseline"]["tps"]

def kb(x):
    return "n/a" if x is None else f"{x / 1024:.0f} kB"

def sec(x):
    return "n/a" if x is None else f"{x:.2f} s"

def tps(v):
    s = f"{v['tps']:.0f}"
    if len(v["tps_all"]) > 1:
        s += " (" + ", ".join(f"{x:.0f}" for x in v["tps_all"]) + ")"
    return s

labels = {"baseline": "no replication (baseline)", "ours": "postgres-seren-replicator init (sync on)",
          "native": "native logical replication (by hand)"}
print()
print("| variant | TPS (per round) | TPS vs baseline | latency avg | lag bytes p50 / p99 | lag s p50 / p99 | zero lag after load (mean / max) | initial copy + set-up |")
print("|---|---|---|---|---|---|---|---|")
for k, v in V.items():
    if k == "baseline":
        print(f"| {labels[k]} | {tps(v)} | 1.00 | {v['lat']:.2f} ms | – | – | – | – |")
        continue
    zero = "not reached" if v["caught"] is None else f"{sec(v['caught'])} / {sec(v['caught_max'])}"
    print(f"| {labels[k]} | {tps(v)} | {v['tps'] / btps:.2f} | {v['lat']:.2f} ms"
          f" | {kb(pct(v['lag_b'], 50))} / {kb(pct(v['lag_b'], 99))}"
          f" | {sec(pct(v['lag_s'], 50))} / {sec(pct(v['lag_s'], 99))}"
          f" | {zero} | {sec(v['setup'])} |")

print()
print("Cross-checks (PostgreSQL's own figures, same sampling):")
print()
print("| variant | samples | source pg_stat_replication.flush_lag p50 / p99 | target now() - last_msg_receipt_time p50 / p99 | target now() - latest_end_time p50 / p99 |")
print("|---|---|---|---|---|")
for k in ("ours", "native"):
    v = V[k]
    print(f"| {k} | {len(v['lag_b'])} | {sec(pct(v['flush'], 50))} / {sec(pct(v['flush'], 99))}"
          f" | {sec(pct(v['receipt'], 50))} / {sec(pct(v['receipt'], 99))}"
          f" | {sec(pct(v['end'], 50))} / {sec(pct(v['end'], 99))} |")

def ratio(a, b):
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "1.00" if a == 0 else "inf"
    return f"{a / b:.2f}"

o, n = V["ours"], V["native"]
print()
print("ours / native:"
      f" TPS {ratio(o['tps'], n['tps'])},"
      f" lag bytes p50 {ratio(pct(o['lag_b'], 50), pct(n['lag_b'], 50))} p99 {ratio(pct(o['lag_b'], 99), pct(n['lag_b'], 99))},"
      f" lag s p50 {ratio(pct(o['lag_s'], 50), pct(n['lag_s'], 50))} p99 {ratio(pct(o['lag_s'], 99), pct(n['lag_s'], 99))},"
      f" zero lag after load {ratio(o['caught'], n['caught'])},"
      f" initial copy + set-up {ratio(o['setup'], n['setup'])}")
PY
