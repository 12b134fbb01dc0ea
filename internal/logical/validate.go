package logical

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// Severity says whether a problem stops init/sync (blocker) or only
// limits what they can promise (warning).
type Severity string

// Severities.
const (
	Blocker Severity = "blocker"
	Warning Severity = "warning"
)

// Problem is one thing that would make init or sync fail or lose data,
// with its fix: the exact SQL to run or setting to change.
type Problem struct {
	Severity Severity `json:"severity"`
	// Server is "source" or "target".
	Server   string `json:"server"`
	Database string `json:"database,omitempty"`
	Object   string `json:"object,omitempty"`
	Message  string `json:"message"`
	Fix      string `json:"fix"`
}

// HasBlocker reports whether any problem is a blocker.
func HasBlocker(ps []Problem) bool {
	for _, p := range ps {
		if p.Severity == Blocker {
			return true
		}
	}
	return false
}

// ValidateOptions say what is about to be replicated.
type ValidateOptions struct {
	// Source and Target are server URLs (any existing database; the
	// selected databases are reached by changing the database name).
	Source, Target pg.URL
	// Rules select databases and tables (nil = everything).
	Rules *selection.Rules
	// NoSync: init will copy only, so logical replication prerequisites
	// are not checked.
	NoSync bool
	// DropExisting: init will replace target databases that hold data, so
	// a non-empty target database is not a problem.
	DropExisting bool
}

// Validate checks both servers and every selected database for what would
// make init or sync fail or lose data, and returns every problem found
// (blockers first). An error means a check could not run (e.g. a server
// is unreachable), not that a problem was found.
func Validate(ctx context.Context, opts ValidateOptions) ([]Problem, error) {
	src, err := pg.Connect(ctx, AdminURL(opts.Source), "source")
	if err != nil {
		return nil, err
	}
	defer src.Close(ctx)
	dst, err := pg.Connect(ctx, AdminURL(opts.Target), "target")
	if err != nil {
		return nil, err
	}
	defer dst.Close(ctx)

	v := &validator{opts: opts, sync: !opts.NoSync}
	if v.srcInfo, err = readServer(ctx, src); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if v.dstInfo, err = readServer(ctx, dst); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	dbs, err := catalog.ListDatabases(ctx, src, opts.Rules)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if len(dbs) == 0 {
		v.add(Blocker, "source", "", "", "no database on the source matches the selection",
			"check --include-databases/--exclude-databases against the databases the source user can connect to")
	}
	for _, d := range dbs {
		v.dbs = append(v.dbs, d.Name)
	}
	if v.targetID, err = TargetID(ctx, dst); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	v.checkVersions()
	if err := v.checkSourceServer(ctx, src); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := v.checkTargetServer(ctx, dst); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	for _, db := range v.dbs {
		conn, err := pg.Connect(ctx, opts.Source.WithDatabase(db), "source")
		if err != nil {
			return nil, err
		}
		err = v.checkDatabase(ctx, conn, dst, db)
		if err == nil {
			err = v.checkTargetDatabase(ctx, db)
		}
		conn.Close(ctx)
		if err != nil {
			return nil, fmt.Errorf("source database %s: %w", db, err)
		}
	}
	sort.SliceStable(v.problems, func(i, j int) bool {
		return v.problems[i].Severity == Blocker && v.problems[j].Severity != Blocker
	})
	return v.problems, nil
}

type serverInfo struct {
	version        int
	user           string
	super          bool
	replication    bool
	createDB       bool
	rds            bool // Amazon RDS/Aurora (rds.* settings, rds_replication role)
	rdsReplication bool
	settings       map[string]string
}

func readServer(ctx context.Context, q pg.Querier) (*serverInfo, error) {
	s := &serverInfo{settings: map[string]string{}}
	var err error
	if s.version, err = pg.ServerVersion(ctx, q); err != nil {
		return nil, err
	}
	err = q.QueryRow(ctx, `
SELECT current_user, r.rolsuper, r.rolreplication, r.rolcreatedb,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication'),
       coalesce((SELECT pg_has_role(current_user, 'rds_replication', 'MEMBER') FROM pg_roles WHERE rolname = 'rds_replication'), false)
FROM pg_roles r WHERE r.rolname = current_user`).Scan(&s.user, &s.super, &s.replication, &s.createDB, &s.rds, &s.rdsReplication)
	if err != nil {
		return nil, fmt.Errorf("read role: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT name, setting FROM pg_settings WHERE name IN
('wal_level', 'max_replication_slots', 'max_wal_senders', 'max_slot_wal_keep_size', 'max_logical_replication_workers', 'max_active_replication_origins',
 'max_worker_processes', 'rds.logical_replication')`)
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	for rows.Next() {
		var k, val string
		if err := rows.Scan(&k, &val); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read settings: %w", err)
		}
		s.settings[k] = val
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	if _, ok := s.settings["rds.logical_replication"]; ok {
		s.rds = true
	}
	return s, nil
}

func (s *serverInfo) int(name string) int {
	var n int
	fmt.Sscan(s.settings[name], &n)
	return n
}

type validator struct {
	opts             ValidateOptions
	sync             bool
	srcInfo, dstInfo *serverInfo
	dbs              []string
	targetID         string // see TargetID: names the pair's replication set
	problems         []Problem
}

func (v *validator) add(sev Severity, server, db, obj, msg, fix string) {
	v.problems = append(v.problems, Problem{Severity: sev, Server: server, Database: db, Object: obj, Message: msg, Fix: fix})
}

func (v *validator) checkVersions() {
	if err := pg.CheckVersion(v.srcInfo.version, "source"); err != nil {
		v.add(Blocker, "source", "", "", err.Error(), fmt.Sprintf("upgrade the source to PostgreSQL %d or newer", pg.MinServerVersion))
	}
	if err := pg.CheckVersion(v.dstInfo.version, "target"); err != nil {
		v.add(Blocker, "target", "", "", err.Error(), fmt.Sprintf("use a target running PostgreSQL %d or newer", pg.MinServerVersion))
	}
	if s, t := v.srcInfo.version/10000, v.dstInfo.version/10000; t < s {
		v.add(Blocker, "target", "", "", fmt.Sprintf("the target runs PostgreSQL %d, older than the source's %d; replicating to an older major is not supported", t, s),
			fmt.Sprintf("use a target running PostgreSQL %d or newer", s))
	}
}

func (v *validator) checkSourceServer(ctx context.Context, src *pgx.Conn) error {
	si := v.srcInfo
	if !v.sync {
		return nil
	}
	restart := "then restart the source server"
	if si.rds {
		restart = "(RDS/Aurora: change it in the DB parameter group, then reboot)"
	}
	if wl := si.settings["wal_level"]; wl != "logical" {
		fix := "ALTER SYSTEM SET wal_level = logical; then restart the source server"
		if si.rds {
			fix = "set rds.logical_replication = 1 in the source's DB parameter group, then reboot the instance"
		}
		v.add(Blocker, "source", "", "wal_level", fmt.Sprintf("wal_level is %q; logical replication needs \"logical\"", wl), fix)
	}
	if !si.super && !si.replication && !si.rdsReplication {
		fix := fmt.Sprintf("ALTER ROLE %s WITH REPLICATION;", pg.Ident(si.user))
		if si.rds {
			fix = fmt.Sprintf("GRANT rds_replication TO %s;", pg.Ident(si.user))
		}
		v.add(Blocker, "source", "", "role "+si.user, fmt.Sprintf("user %q may not create replication slots (no REPLICATION attribute)", si.user), fix)
	}

	// Slots: one per database, except those that already exist (a re-run).
	type slotRow struct {
		name   string
		active bool
	}
	rows, err := src.Query(ctx, "SELECT slot_name::text, active FROM pg_replication_slots ORDER BY slot_name")
	if err != nil {
		return fmt.Errorf("list slots: %w", err)
	}
	slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (slotRow, error) {
		var s slotRow
		return s, r.Scan(&s.name, &s.active)
	})
	if err != nil {
		return fmt.Errorf("list slots: %w", err)
	}
	existing := map[string]bool{}
	var inactive []string
	for _, s := range slots {
		existing[s.name] = true
		if !s.active {
			inactive = append(inactive, s.name)
		}
	}
	need := 0
	for _, db := range v.dbs {
		if !existing[PairNames(db, v.targetID).Slot] && !existing[legacyNames(db).Slot] {
			need++
		}
	}
	maxSlots := si.int("max_replication_slots")
	if free := maxSlots - len(slots); free < need {
		fix := fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; %s", len(slots)+need, restart)
		if len(inactive) > 0 {
			var drops []string
			for _, n := range inactive[:min(len(inactive), 5)] {
				drops = append(drops, fmt.Sprintf("SELECT pg_drop_replication_slot(%s);", pg.Literal(n)))
			}
			fix += "; or, if these unused slots are not needed: " + strings.Join(drops, " ")
		}
		v.add(Blocker, "source", "", "max_replication_slots",
			fmt.Sprintf("%s needed (one per database), %d free (max_replication_slots = %d, %d in use)", plural(need, "replication slot"), max(free, 0), maxSlots, len(slots)), fix)
	}
	var senders int
	if err := src.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'").Scan(&senders); err != nil {
		return fmt.Errorf("count WAL senders: %w", err)
	}
	maxSenders := si.int("max_wal_senders")
	if free := maxSenders - senders; free < need+1 && need > 0 {
		v.add(Blocker, "source", "", "max_wal_senders",
			fmt.Sprintf("%d WAL senders needed (one per database, plus one while a slot is created), %d free (max_wal_senders = %d)", need+1, max(free, 0), maxSenders),
			fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; %s", senders+need+1, restart))
	}
	if keep := si.settings["max_slot_wal_keep_size"]; keep != "" && keep != "-1" {
		v.add(Warning, "source", "", "max_slot_wal_keep_size",
			fmt.Sprintf("max_slot_wal_keep_size is %s MB: if the copy (or a paused subscription) lags by more WAL than that, the source invalidates the slot and the target needs a fresh copy", keep),
			"ALTER SYSTEM SET max_slot_wal_keep_size = -1; SELECT pg_reload_conf(); (or make sure there is room for the WAL written during the copy)")
	}
	return nil
}

func (v *validator) checkTargetServer(ctx context.Context, dst *pgx.Conn) error {
	ti := v.dstInfo
	rows, err := dst.Query(ctx, "SELECT datname FROM pg_database")
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	var missing []string
	for _, db := range v.dbs {
		if !have[db] {
			missing = append(missing, db)
		}
	}
	if len(missing) > 0 && !ti.super && !ti.createDB {
		v.add(Blocker, "target", "", "role "+ti.user,
			fmt.Sprintf("user %q may not create databases, and %s do not exist on the target", ti.user, strings.Join(missing, ", ")),
			fmt.Sprintf("ALTER ROLE %s CREATEDB; (or create the databases on the target first)", pg.Ident(ti.user)))
	}
	if !v.sync {
		return nil
	}
	canSubscribe := ti.super
	if !canSubscribe && ti.version >= 160000 {
		if err := dst.QueryRow(ctx, "SELECT pg_has_role(current_user, 'pg_create_subscription', 'MEMBER')").Scan(&canSubscribe); err != nil {
			return fmt.Errorf("check pg_create_subscription: %w", err)
		}
	}
	if !canSubscribe {
		fix := "connect to the target as a superuser"
		if ti.version >= 160000 {
			fix = fmt.Sprintf("GRANT pg_create_subscription TO %s; (it also needs CREATE on each database)", pg.Ident(ti.user))
		}
		v.add(Blocker, "target", "", "role "+ti.user, fmt.Sprintf("user %q may not create subscriptions", ti.user), fix)
	}
	var subs int
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM pg_subscription").Scan(&subs); err != nil {
		return fmt.Errorf("count subscriptions: %w", err)
	}
	need := 0
	for _, db := range v.dbs {
		var n int
		// Our subscription may already exist (a re-run); count the rest.
		if err := dst.QueryRow(ctx, "SELECT count(*) FROM pg_subscription WHERE subname IN ($1, $2)", PairNames(db, v.targetID).Subscription, legacyNames(db).Subscription).Scan(&n); err != nil {
			return fmt.Errorf("count subscriptions: %w", err)
		}
		if n == 0 {
			need++
		}
	}
	total := subs + need
	if w := ti.int("max_logical_replication_workers"); w < total {
		v.add(Blocker, "target", "", "max_logical_replication_workers",
			fmt.Sprintf("%d subscriptions will run (one apply worker each), max_logical_replication_workers is %d", total, w),
			fmt.Sprintf("ALTER SYSTEM SET max_logical_replication_workers = %d; ALTER SYSTEM SET max_worker_processes = %d; then restart the target server", total+2, max(ti.int("max_worker_processes"), total+4)))
	}
	// Each subscription tracks its progress in a replication origin on the
	// target: limited by max_replication_slots up to PostgreSQL 17, by
	// max_active_replication_origins from 18 on.
	origins := "max_replication_slots"
	if ti.version >= 180000 {
		origins = "max_active_replication_origins"
	}
	if s := ti.int(origins); s < total {
		v.add(Blocker, "target", "", origins,
			fmt.Sprintf("%d subscriptions need %d replication origins, limited by the target's %s = %d", total, total, origins, s),
			fmt.Sprintf("ALTER SYSTEM SET %s = %d; then restart the target server", origins, total))
	}
	return nil
}

func (v *validator) checkDatabase(ctx context.Context, src, dst *pgx.Conn, db string) error {
	tables, err := catalog.ListTables(ctx, src)
	if err != nil {
		return err
	}
	var owned map[uint32]bool
	if v.sync && !v.srcInfo.super {
		owned = map[uint32]bool{}
		rows, err := src.Query(ctx, "SELECT c.oid FROM pg_class c WHERE c.relkind IN ('r', 'p') AND pg_has_role(c.relowner, 'USAGE')")
		if err != nil {
			return fmt.Errorf("check table ownership: %w", err)
		}
		oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
		if err != nil {
			return fmt.Errorf("check table ownership: %w", err)
		}
		for _, o := range oids {
			owned[o] = true
		}
	}
	// pg_dump and init read every sequence's value.
	srows, err := src.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(c.oid, 'SELECT') ELSE false END`)
	if err != nil {
		return fmt.Errorf("check privileges on sequences: %w", err)
	}
	var seqSchema, seqName string
	if _, err := pgx.ForEachRow(srows, []any{&seqSchema, &seqName}, func() error {
		q := pg.Ident(seqSchema, seqName)
		v.add(Blocker, "source", db, "sequence "+seqSchema+"."+seqName, fmt.Sprintf("user %q cannot read sequence %s (pg_dump and init read every sequence's value)", v.srcInfo.user, q),
			fmt.Sprintf("GRANT SELECT ON SEQUENCE %s TO %s;", q, pg.Ident(v.srcInfo.user)))
		return nil
	}); err != nil {
		return fmt.Errorf("check privileges on sequences: %w", err)
	}
	var filtered []TableSpec
	for _, t := range tables {
		rule := v.opts.Rules.Table(db, t.Schema, t.Name)
		if !rule.Include {
			continue
		}
		obj := "table " + t.String()
		var readable bool
		if err := src.QueryRow(ctx, "SELECT has_table_privilege($1::oid, 'SELECT')", t.OID).Scan(&readable); err != nil {
			return fmt.Errorf("check privileges on %s: %w", t, err)
		}
		if !readable {
			v.add(Blocker, "source", db, obj, fmt.Sprintf("user %q cannot read %s", v.srcInfo.user, t),
				fmt.Sprintf("GRANT SELECT ON %s TO %s;", t.QualifiedName(), pg.Ident(v.srcInfo.user)))
		}
		if rule.Predicate != "" && !rule.SchemaOnly && readable {
			if msg, err := predicateResolves(ctx, src, t, rule.Predicate); err != nil {
				return err
			} else if msg != "" {
				v.add(Blocker, "source", db, obj, "the row filter does not fit this table: "+msg,
					"a row filter names columns of its own table (check the spelling and the table the filter applies to)")
			}
		}
		if !v.sync || rule.SchemaOnly {
			continue
		}
		if t.Unlogged {
			v.add(Warning, "source", db, obj, "unlogged table: copied once, but logical replication does not carry its later changes",
				fmt.Sprintf("ALTER TABLE %s SET LOGGED; (on the source, before init)", t.QualifiedName()))
			continue
		}
		if !hasReplicaIdentity(t) {
			v.add(Warning, "source", db, obj,
				"no primary key or replica identity: once published, UPDATE and DELETE on this table fail on the source (\"cannot update table … because it does not have a replica identity\"); only INSERTs replicate",
				fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL; (or add a primary key)", t.QualifiedName()))
		}
		if owned != nil && !owned[t.OID] {
			v.add(Blocker, "source", db, obj, fmt.Sprintf("user %q neither owns %s nor is a superuser, so it cannot add it to a publication", v.srcInfo.user, t),
				fmt.Sprintf("connect to the source as the table's owner or a superuser, or: ALTER TABLE %s OWNER TO %s;", t.QualifiedName(), pg.Ident(v.srcInfo.user)))
		}
		if rule.Predicate != "" {
			if v.srcInfo.version < 150000 {
				v.add(Blocker, "source", db, obj, fmt.Sprintf("a table or time filter applies, but publication row filters need PostgreSQL 15+ (the source runs %d)", v.srcInfo.version/10000),
					"drop the filter for this table, run init with --no-sync, or upgrade the source")
			} else {
				filtered = append(filtered, TableSpec{Schema: t.Schema, Name: t.Name, RowFilter: rule.Predicate})
			}
		}
	}
	if len(filtered) > 0 {
		if err := v.checkRowFilters(ctx, src, db, filtered); err != nil {
			return err
		}
	}
	if v.sync {
		var los, seqs int
		if err := src.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_largeobject_metadata), (SELECT count(*) FROM pg_class WHERE relkind = 'S')`).Scan(&los, &seqs); err != nil {
			return fmt.Errorf("count large objects and sequences: %w", err)
		}
		if los > 0 {
			v.add(Warning, "source", db, "large objects", fmt.Sprintf("%s: logical replication does not carry large objects; any created or changed after the copy are not on the target", plural(los, "large object")),
				"keep large objects unchanged while sync runs (they are copied once, at the snapshot), or move their content into bytea columns before migrating")
		}
		if seqs > 0 {
			v.add(Warning, "source", db, "sequences", fmt.Sprintf("%s: logical replication does not carry sequence values; init copies them at the snapshot and cutover copies them again after writes stop", plural(seqs, "sequence")),
				"switch the application with `postgres-seren-replicator cutover` (it copies sequence values), not by dropping the subscription by hand")
		}
		if s, err := GetSlot(ctx, src, PairNames(db, v.targetID).Slot); err != nil {
			return err
		} else if s != nil && !s.Active {
			v.add(Warning, "source", db, "slot "+s.Name, "an inactive replication slot of ours exists (left by an earlier run?): it retains WAL, and init cannot reuse it",
				fmt.Sprintf("if sync is not meant to be running for this database: SELECT pg_drop_replication_slot(%s);", pg.Literal(s.Name)))
		}
	}
	return v.checkExtensions(ctx, src, dst, db)
}

// predicateResolves has PostgreSQL plan (not run) the table's row filter,
// in a READ ONLY transaction under standard literal rules, so a filter
// naming a column the table lacks, or comparing mismatched types, is
// reported before anything is created. It returns the server's complaint,
// or "" when the filter fits.
func predicateResolves(ctx context.Context, src *pgx.Conn, t catalog.Table, pred string) (string, error) {
	tx, err := src.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return "", fmt.Errorf("check row filter of %s: %w", t, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	if _, err := tx.Exec(ctx, selection.SessionSetup); err != nil {
		return "", fmt.Errorf("check row filter of %s: %w", t, err)
	}
	_, err = tx.Exec(ctx, "EXPLAIN (COSTS OFF) SELECT 1 FROM ONLY "+t.QualifiedName()+" WHERE ("+pred+")")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "42") || strings.HasPrefix(pgErr.Code, "22")) {
		if pgErr.Hint != "" {
			return pgErr.Message + " (" + pgErr.Hint + ")", nil
		}
		return pgErr.Message, nil
	}
	if err != nil {
		return "", fmt.Errorf("check row filter of %s: %w", t, err)
	}
	return "", nil
}

// checkTargetDatabase reports what init refuses at start: a target
// database that holds relations, is not an unfinished copy of ours (a
// checkpoint) and is not this pair's finished, streaming copy.
func (v *validator) checkTargetDatabase(ctx context.Context, db string) error {
	if v.opts.DropExisting {
		return nil
	}
	d, err := ConnectIfExists(ctx, v.opts.Target.WithDatabase(db), "target")
	if err != nil || d == nil {
		return err
	}
	defer d.Close(context.WithoutCancel(ctx))
	var ours bool
	var objects int
	if err := d.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%')`,
		checkpointSchema).Scan(&ours, &objects); err != nil {
		return fmt.Errorf("inspect target database %s: %w", db, err)
	}
	if ours || objects == 0 {
		return nil
	}
	if v.sync {
		n, err := NamesFor(ctx, v.targetID, d, db)
		if err != nil {
			return err
		}
		if sub, err := GetSubscription(ctx, d, n.Subscription); err != nil {
			return err
		} else if sub != nil {
			return nil // finished and streaming: init skips it
		}
	}
	v.add(Blocker, "target", db, "database "+db, fmt.Sprintf("target database %s already holds %d tables or other relations that are not an unfinished copy of ours", db, objects),
		fmt.Sprintf("pick another target, drop the database there (DROP DATABASE %s), or let init replace it with --drop-existing", pg.Ident(db)))
	return nil
}

// checkpointSchema is copier.CheckpointSchema (not imported: logical sits
// below the copy engine).
const checkpointSchema = "_seren_replicator_checkpoint"

func hasReplicaIdentity(t catalog.Table) bool {
	switch t.ReplicaIdentity {
	case 'f':
		return true
	case 'i':
		return t.HasReplicaIndex
	case 'd':
		return len(t.PrimaryKey) > 0
	}
	return false
}

// checkRowFilters creates the publication's row filters in a transaction
// that is rolled back, to find filters PostgreSQL would refuse or that
// would make UPDATE/DELETE fail on the source.
func (v *validator) checkRowFilters(ctx context.Context, src *pgx.Conn, db string, specs []TableSpec) error {
	var frozen []TableSpec
	for _, t := range specs {
		f, err := freezeTimeFilters(ctx, src, t)
		if err != nil {
			v.add(Blocker, "source", db, "table "+t.String(), err.Error(), "check the time filter's column name and type")
			continue
		}
		t.RowFilter = f
		frozen = append(frozen, t)
	}
	tx, err := src.Begin(ctx)
	if err != nil {
		return fmt.Errorf("check row filters: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // always rolled back
	if _, err := tx.Exec(ctx, selection.SessionSetup); err != nil {
		return fmt.Errorf("check row filters: %w", err)
	}
	for _, t := range frozen {
		obj := "table " + t.String()
		if _, err := tx.Exec(ctx, "SAVEPOINT seren_probe"); err != nil {
			return fmt.Errorf("check row filters: %w", err)
		}
		_, err = tx.Exec(ctx, createPublicationSQL("seren_validate_probe", false, []TableSpec{t}))
		if err == nil {
			_, err = tx.Exec(ctx, "EXPLAIN (COSTS OFF) DELETE FROM "+pg.Ident(t.Schema, t.Name)+" WHERE false")
		}
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case errors.As(err, &pgErr) && pgErr.Code == "42P10":
			v.add(Blocker, "source", db, obj, "the row filter uses columns outside the table's replica identity: PostgreSQL would reject every UPDATE and DELETE of this table on the source once it is published",
				fmt.Sprintf("filter on primary key columns only, or: ALTER TABLE %s REPLICA IDENTITY FULL;", pg.Ident(t.Schema, t.Name)))
		case errors.As(err, &pgErr) && (pgErr.Code == "55000" || pgErr.Code == "42501"):
			// no replica identity at all, or not the owner: reported already
		case errors.As(err, &pgErr):
			v.add(Blocker, "source", db, obj, "the row filter cannot be used in a publication: "+strings.TrimSpace(pgErr.Message+". "+pgErr.Detail),
				"a publication row filter may use only the table's columns, built-in operators and immutable functions")
		default:
			return fmt.Errorf("check row filter of %s: %w", t, err)
		}
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT seren_probe"); err != nil {
			return fmt.Errorf("check row filters: %w", err)
		}
	}
	return nil
}

func (v *validator) checkExtensions(ctx context.Context, src, dst *pgx.Conn, db string) error {
	rows, err := src.Query(ctx, "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
	if err != nil {
		return fmt.Errorf("list extensions: %w", err)
	}
	exts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list extensions: %w", err)
	}
	if len(exts) == 0 {
		return nil
	}
	rows, err = dst.Query(ctx, "SELECT name FROM pg_available_extensions WHERE name = ANY($1)", exts)
	if err != nil {
		return fmt.Errorf("target: list available extensions: %w", err)
	}
	avail, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("target: list available extensions: %w", err)
	}
	have := map[string]bool{}
	for _, a := range avail {
		have[a] = true
	}
	for _, e := range exts {
		if !have[e] {
			v.add(Blocker, "target", db, "extension "+e, fmt.Sprintf("extension %q is installed in the source database but not available on the target server", e),
				fmt.Sprintf("install the package that provides %q on the target server (for PostgreSQL %d, e.g. postgresql-%d-%s), or enable it in the provider's console", e, v.dstInfo.version/10000, v.dstInfo.version/10000, e))
		}
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
