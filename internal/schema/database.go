package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/copier"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// ErrTargetNotEmpty is returned when a target database holds data that is
// not ours and --drop-existing was not given.
var ErrTargetNotEmpty = errors.New("target database is not empty")

// TargetState says what PrepareDatabase found.
type TargetState int

// Target states.
const (
	// Created: a fresh database; nothing copied yet.
	Created TargetState = iota
	// Resuming: an earlier run of ours left a checkpoint; continue it.
	Resuming
)

// PrepareDatabase makes sure the target database exists and may be
// written: a database left by an interrupted run of ours is resumed
// (unless noResume), an empty one is used, a non-empty one is refused
// unless dropExisting, in which case it is dropped and created anew.
func PrepareDatabase(ctx context.Context, dstAdmin *pgx.Conn, target pg.URL, db catalog.Database, dropExisting, noResume bool, warn func(string)) (TargetState, error) {
	var exists bool
	if err := dstAdmin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db.Name).Scan(&exists); err != nil {
		return 0, fmt.Errorf("look for database %s on target: %w", db.Name, err)
	}
	if exists {
		conn, err := pg.Connect(ctx, target.WithDatabase(db.Name), "target")
		if err != nil {
			return 0, err
		}
		ours, err := copier.HasCheckpoint(ctx, conn)
		if err != nil {
			conn.Close(ctx)
			return 0, err
		}
		var stage, origin string
		if ours {
			stage, err = copier.State(ctx, conn, "stage")
			if err == nil {
				origin, err = copier.State(ctx, conn, "origin")
			}
			if err != nil {
				conn.Close(ctx)
				return 0, err
			}
		}
		var objects int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`, copier.CheckpointSchema).Scan(&objects)
		conn.Close(ctx)
		if err != nil {
			return 0, fmt.Errorf("inspect target database %s: %w", db.Name, err)
		}
		switch {
		case ours && !noResume && stage != "" && stage != "created":
			return Resuming, nil
		case ours && origin == adopted && (noResume || stage == "" || stage == "created"):
			// An empty database that existed before us (e.g. the target's
			// own "postgres"): never drop it; empty it of what we put in.
			warn(fmt.Sprintf("database %s: an earlier run stopped before its copy was done; emptying it again (it existed before and is kept)", db.Name))
			return Created, cleanAdopted(ctx, target, db.Name)
		case ours && (stage == "" || stage == "created"):
			// We created it but its schema never committed: start it again.
			warn(fmt.Sprintf("database %s: an earlier run stopped before its schema was in; creating it again", db.Name))
		case objects == 0 && !ours:
			warn(fmt.Sprintf("database %s already exists on the target and is empty: using it (its own properties are kept)", db.Name))
			return Created, markAdopted(ctx, target, db.Name)
		case !dropExisting && ours:
			return 0, hint.Wrap(fmt.Errorf("database %s on the target holds an unfinished copy and --no-resume was given: %w", db.Name, ErrTargetNotEmpty),
				"re-run without --no-resume to continue that copy, or add --drop-existing to start again from scratch")
		case !dropExisting:
			return 0, hint.Wrap(fmt.Errorf("database %s on the target already holds %d tables or other relations: %w", db.Name, objects, ErrTargetNotEmpty),
				fmt.Sprintf("pick another target, drop the database there (DROP DATABASE %s), or add --drop-existing to replace it", pg.Ident(db.Name)))
		}
		if err := dropDatabase(ctx, dstAdmin, target, db.Name, warn); err != nil {
			return 0, err
		}
	}
	if err := createDatabase(ctx, dstAdmin, db, warn); err != nil {
		return 0, err
	}
	return Created, markCreated(ctx, target, db.Name)
}

// adopted is the checkpoint's "origin" of a database that existed (empty)
// before the run: it is emptied, never dropped, when started again.
const adopted = "adopted"

func markAdopted(ctx context.Context, target pg.URL, name string) error {
	if err := markCreated(ctx, target, name); err != nil {
		return err
	}
	conn, err := pg.Connect(ctx, target.WithDatabase(name), "target")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return copier.SetState(ctx, conn, "origin", adopted)
}

// cleanAdopted empties an adopted database of everything an interrupted
// run restored into it (it was empty before: see PrepareDatabase), keeps
// the database itself, and starts its checkpoint again.
func cleanAdopted(ctx context.Context, target pg.URL, name string) error {
	conn, err := pg.Connect(ctx, target.WithDatabase(name), "target")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, copier.SessionSettings); err != nil {
		return fmt.Errorf("configure session: %w", err)
	}
	var ver int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&ver); err != nil {
		return fmt.Errorf("empty database %s: %w", name, err)
	}
	// public as a new database has it (pre-data assumes it exists).
	public := "CREATE SCHEMA public; GRANT ALL ON SCHEMA public TO PUBLIC"
	if ver >= 150000 {
		public = "CREATE SCHEMA public AUTHORIZATION pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC"
	}
	public += "; COMMENT ON SCHEMA public IS 'standard public schema'"
	_, err = conn.Exec(ctx, `DO $$ DECLARE s text; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', `+pg.Literal(copier.CheckpointSchema)+`) AND nspname !~ '^pg_' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $$;
SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata;
`+public)
	if err != nil {
		return fmt.Errorf("empty database %s on the target: %w", name, err)
	}
	if err := copier.DropCheckpoint(ctx, conn); err != nil {
		return err
	}
	return markAdopted(ctx, target, name)
}

func markCreated(ctx context.Context, target pg.URL, name string) error {
	conn, err := pg.Connect(ctx, target.WithDatabase(name), "target")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := copier.EnsureCheckpoint(ctx, conn); err != nil {
		return err
	}
	return copier.SetState(ctx, conn, "stage", "created")
}

func createDatabase(ctx context.Context, dst *pgx.Conn, db catalog.Database, warn func(string)) error {
	var ownerExists bool
	_ = dst.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", db.Owner).Scan(&ownerExists)
	opts := []string{"TEMPLATE template0", "ENCODING " + pg.Literal(db.Encoding)}
	locale := []string{"LC_COLLATE " + pg.Literal(db.Collate), "LC_CTYPE " + pg.Literal(db.Ctype)}
	switch db.LocaleProv {
	case "i":
		locale = append(locale, "LOCALE_PROVIDER icu", "ICU_LOCALE "+pg.Literal(db.IcuLocale))
	case "b": // PostgreSQL 17+
		locale = append(locale, "LOCALE_PROVIDER builtin", "BUILTIN_LOCALE "+pg.Literal(db.IcuLocale))
	}
	if db.ConnLimit >= 0 {
		opts = append(opts, fmt.Sprintf("CONNECTION LIMIT %d", db.ConnLimit))
	}
	stmt := "CREATE DATABASE " + pg.Ident(db.Name) + " WITH " + strings.Join(append(opts, locale...), " ")
	if _, err := dst.Exec(ctx, stmt); err != nil {
		// The target may lack the source's locale: fall back to its default.
		warn(fmt.Sprintf("database %s: cannot use the source's locale (%s/%s) on the target (%s); using the target's default", db.Name, db.Collate, db.Ctype, sqlMessage(err)))
		if _, err := dst.Exec(ctx, "CREATE DATABASE "+pg.Ident(db.Name)+" WITH "+strings.Join(opts, " ")); err != nil {
			return hint.Wrap(fmt.Errorf("create database %s on target: %w", db.Name, err),
				"the target user needs CREATEDB (ALTER ROLE <user> CREATEDB) or create the database yourself")
		}
	}
	if ownerExists {
		if _, err := dst.Exec(ctx, "ALTER DATABASE "+pg.Ident(db.Name)+" OWNER TO "+pg.Ident(db.Owner)); err != nil {
			warn(fmt.Sprintf("database %s: owner %s not set: %s", db.Name, db.Owner, sqlMessage(err)))
		}
	} else {
		warn(fmt.Sprintf("database %s: owner role %s does not exist on the target; owned by the connecting user", db.Name, db.Owner))
	}
	if db.Comment != "" {
		if _, err := dst.Exec(ctx, "COMMENT ON DATABASE "+pg.Ident(db.Name)+" IS "+pg.Literal(db.Comment)); err != nil {
			warn(fmt.Sprintf("database %s: comment not set: %s", db.Name, sqlMessage(err)))
		}
	}
	return nil
}

// CopyDatabaseSettings copies per-database settings (ALTER DATABASE … SET,
// ALTER ROLE … IN DATABASE … SET) and database privileges.
func CopyDatabaseSettings(ctx context.Context, src, dst *pgx.Conn, db string, warn func(string)) error {
	rows, err := src.Query(ctx, `
SELECT coalesce(r.rolname, ''), unnest(s.setconfig)
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE d.datname = $1`, db)
	if err != nil {
		return fmt.Errorf("read settings of database %s: %w", db, err)
	}
	var role, kv string
	var stmts []string
	if _, err := pgx.ForEachRow(rows, []any{&role, &kv}, func() error {
		set, ok := setClause(kv)
		if !ok {
			return nil
		}
		if role == "" {
			stmts = append(stmts, "ALTER DATABASE "+pg.Ident(db)+" SET "+set)
		} else {
			stmts = append(stmts, "ALTER ROLE "+pg.Ident(role)+" IN DATABASE "+pg.Ident(db)+" SET "+set)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read settings of database %s: %w", db, err)
	}
	// Privileges: only when the source changed the defaults.
	arows, err := src.Query(ctx, `
SELECT coalesce(g.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
WHERE d.datname = $1 AND a.grantee <> d.datdba`, db)
	if err != nil {
		return fmt.Errorf("read privileges of database %s: %w", db, err)
	}
	var grantee, priv string
	var grantable bool
	var grants []string
	if _, err := pgx.ForEachRow(arows, []any{&grantee, &priv, &grantable}, func() error {
		to := "PUBLIC"
		if grantee != "PUBLIC" {
			to = pg.Ident(grantee)
		}
		g := "GRANT " + priv + " ON DATABASE " + pg.Ident(db) + " TO " + to
		if grantable {
			g += " WITH GRANT OPTION"
		}
		grants = append(grants, g)
		return nil
	}); err != nil {
		return fmt.Errorf("read privileges of database %s: %w", db, err)
	}
	var hasACL bool
	_ = src.QueryRow(ctx, "SELECT datacl IS NOT NULL FROM pg_database WHERE datname = $1", db).Scan(&hasACL)
	if hasACL {
		stmts = append(stmts, "REVOKE ALL ON DATABASE "+pg.Ident(db)+" FROM PUBLIC")
		stmts = append(stmts, grants...)
	}
	for _, s := range stmts {
		if _, err := dst.Exec(ctx, s); err != nil {
			warn(fmt.Sprintf("%s: %s", s, sqlMessage(err)))
		}
	}
	return nil
}

// RecreateDatabase drops a target database of ours and creates it again.
func RecreateDatabase(ctx context.Context, dstAdmin *pgx.Conn, target pg.URL, db catalog.Database, warn func(string)) error {
	if conn, err := pg.Connect(ctx, target.WithDatabase(db.Name), "target"); err == nil {
		origin, serr := copier.State(ctx, conn, "origin")
		conn.Close(ctx)
		if serr != nil {
			return serr
		}
		if origin == adopted {
			return cleanAdopted(ctx, target, db.Name)
		}
	}
	if err := dropDatabase(ctx, dstAdmin, target, db.Name, warn); err != nil {
		return err
	}
	if err := createDatabase(ctx, dstAdmin, db, warn); err != nil {
		return err
	}
	return markCreated(ctx, target, db.Name)
}

// dropDatabase drops a target database, first detaching and dropping its
// subscriptions (which would block DROP DATABASE). Their slots on the
// source are dropped later, when init recreates its own.
func dropDatabase(ctx context.Context, dstAdmin *pgx.Conn, target pg.URL, name string, warn func(string)) error {
	// A database that publishes or has other sessions is in use: it may be
	// someone's source. Refuse instead of forcing it away.
	var others int
	var who []string
	// A session we just closed lingers for a moment: look again for a few
	// seconds before calling the database busy.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := dstAdmin.QueryRow(ctx, `SELECT count(*), coalesce(array_agg(DISTINCT coalesce(usename, '?') || '@' || coalesce(host(client_addr), 'local')), '{}')
FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`, name).Scan(&others, &who); err != nil {
			return fmt.Errorf("look for sessions in target database %s: %w", name, err)
		}
		if others == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if others > 0 {
		return hint.Wrap(fmt.Errorf("refusing to drop database %s on target %s: %d other session(s) use it (%s)", name, target.Host(), others, strings.Join(who, ", ")),
			"a database in use may be a live source: check the --target URL, or end those sessions and run again")
	}
	var slots int
	if err := dstAdmin.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE database = $1", name).Scan(&slots); err != nil {
		return fmt.Errorf("look for replication slots of target database %s: %w", name, err)
	}
	conn, err := pg.Connect(ctx, target.WithDatabase(name), "target")
	if err == nil {
		var pubs []string
		rows, qerr := conn.Query(ctx, "SELECT pubname FROM pg_publication ORDER BY 1")
		if qerr == nil {
			pubs, qerr = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if qerr != nil {
			conn.Close(ctx)
			return fmt.Errorf("list publications in target database %s: %w", name, qerr)
		}
		if len(pubs) > 0 || slots > 0 {
			conn.Close(ctx)
			return hint.Wrap(fmt.Errorf("refusing to drop database %s on target %s: it is a replication source (publications: %s; %d replication slot(s))", name, target.Host(), orNone(pubs), slots),
				"a target never publishes: check the --target URL; if this database really is to be replaced, drop its publications and slots first")
		}
		var tables int
		_ = conn.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))").Scan(&tables)
		warn(fmt.Sprintf("--drop-existing: dropping database %s on target %s (%d tables)", name, target.Host(), tables))
		rows, qerr = conn.Query(ctx, "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
		var subs []string
		if qerr == nil {
			subs, qerr = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		for _, sub := range subs {
			for _, stmt := range []string{"ALTER SUBSCRIPTION %s DISABLE", "ALTER SUBSCRIPTION %s SET (slot_name = NONE)", "DROP SUBSCRIPTION %s"} {
				if _, err := conn.Exec(ctx, fmt.Sprintf(stmt, pg.Ident(sub))); err != nil {
					conn.Close(ctx)
					return fmt.Errorf("drop subscription %s in target database %s: %w", sub, name, err)
				}
			}
		}
		conn.Close(ctx)
		if qerr != nil {
			return fmt.Errorf("list subscriptions in target database %s: %w", name, qerr)
		}
	}
	if _, err := dstAdmin.Exec(ctx, "DROP DATABASE IF EXISTS "+pg.Ident(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s on target: %w", name, err)
	}
	return nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
