// Package schema copies everything that is not table rows: roles (globals),
// databases with their properties, the schema in two halves around the data
// copy (pre-data before, post-data after, split so that each table's indexes
// are built as soon as its rows are in), sequence values and large objects
// at the copy's snapshot.
package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Role is a role read from the source.
type Role struct {
	Name                                                             string
	Super, Inherit, CreateRole, CreateDB, Login, Replication, Bypass bool
	ConnLimit                                                        int
	ValidUntil                                                       *string
	Password                                                         *string // hash, when readable
	Comment                                                          string
}

// RolesResult reports what CopyRoles did.
type RolesResult struct {
	Created  []string
	Existing []string
	Warnings []string
}

// reservedRole reports roles that belong to the server or the provider and
// are never copied.
func reservedRole(name string) bool {
	if strings.HasPrefix(name, "pg_") {
		return true
	}
	for _, p := range []string{"rds", "azure", "cloudsql", "alloydb", "neon_", "supabase_", "aiven", "rdsadmin", "replication_role"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// CopyRoles creates the source's roles on the target, with their attributes,
// password hashes (when the source lets us read them), memberships and
// settings. What the target cannot accept — superuser-only attributes when
// we are not superuser there, reserved provider roles — is skipped with a
// warning; a role that already exists on the target is left as it is.
func CopyRoles(ctx context.Context, src, dst *pgx.Conn) (RolesResult, error) {
	var res RolesResult
	rows, err := src.Query(ctx, `
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
       r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text, coalesce(shobj_description(r.oid, 'pg_authid'), '')
FROM pg_roles r WHERE r.oid >= 16384 OR (r.oid > 10 AND r.rolname !~ '^pg_')
ORDER BY r.rolname`)
	if err != nil {
		return res, fmt.Errorf("read roles on source: %w", err)
	}
	var roles []Role
	for rows.Next() {
		var r Role
		if err := rows.Scan(&r.Name, &r.Super, &r.Inherit, &r.CreateRole, &r.CreateDB, &r.Login, &r.Replication,
			&r.Bypass, &r.ConnLimit, &r.ValidUntil, &r.Comment); err != nil {
			rows.Close()
			return res, fmt.Errorf("read roles on source: %w", err)
		}
		roles = append(roles, r)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("read roles on source: %w", err)
	}
	// Password hashes need superuser on the source; without them roles are
	// created without passwords and the user is told.
	passwords := map[string]string{}
	if prow, err := src.Query(ctx, "SELECT rolname, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL"); err == nil {
		var n, p string
		_, ferr := pgx.ForEachRow(prow, []any{&n, &p}, func() error { passwords[n] = p; return nil })
		if ferr != nil {
			res.Warnings = append(res.Warnings, "cannot read role passwords on the source (needs superuser): roles are created without passwords; set them on the target with ALTER ROLE … PASSWORD")
		}
	} else {
		res.Warnings = append(res.Warnings, "cannot read role passwords on the source (needs superuser): roles are created without passwords; set them on the target with ALTER ROLE … PASSWORD")
	}

	var dstSuper, dstCreateRole bool
	if err := dst.QueryRow(ctx, "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&dstSuper, &dstCreateRole); err != nil {
		return res, fmt.Errorf("read target privileges: %w", err)
	}
	existing := map[string]bool{}
	erows, err := dst.Query(ctx, "SELECT rolname FROM pg_roles")
	if err != nil {
		return res, fmt.Errorf("read roles on target: %w", err)
	}
	var en string
	if _, err := pgx.ForEachRow(erows, []any{&en}, func() error { existing[en] = true; return nil }); err != nil {
		return res, fmt.Errorf("read roles on target: %w", err)
	}
	if !dstSuper && !dstCreateRole {
		res.Warnings = append(res.Warnings, "the target user has neither SUPERUSER nor CREATEROLE: roles are not copied; create them on the target first, or grant CREATEROLE")
		return res, nil
	}
	for _, r := range roles {
		if existing[r.Name] {
			res.Existing = append(res.Existing, r.Name)
			continue
		}
		if reservedRole(r.Name) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("role %s is reserved by the server or provider: skipped", r.Name))
			continue
		}
		var attrs []string
		flag := func(on bool, yes, no string) {
			if on {
				attrs = append(attrs, yes)
			} else {
				attrs = append(attrs, no)
			}
		}
		super, repl, bypass := r.Super, r.Replication, r.Bypass
		if !dstSuper && (super || repl || bypass) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("role %s: SUPERUSER/REPLICATION/BYPASSRLS need superuser on the target: created without them", r.Name))
			super, repl, bypass = false, false, false
		}
		flag(super, "SUPERUSER", "NOSUPERUSER")
		flag(r.Inherit, "INHERIT", "NOINHERIT")
		flag(r.CreateRole, "CREATEROLE", "NOCREATEROLE")
		flag(r.CreateDB, "CREATEDB", "NOCREATEDB")
		flag(r.Login, "LOGIN", "NOLOGIN")
		flag(repl, "REPLICATION", "NOREPLICATION")
		flag(bypass, "BYPASSRLS", "NOBYPASSRLS")
		attrs = append(attrs, fmt.Sprintf("CONNECTION LIMIT %d", r.ConnLimit))
		if r.ValidUntil != nil {
			attrs = append(attrs, "VALID UNTIL "+pg.Literal(*r.ValidUntil))
		}
		if p, ok := passwords[r.Name]; ok {
			attrs = append(attrs, "PASSWORD "+pg.Literal(p))
		}
		// Never log this statement: it carries a password hash.
		if _, err := dst.Exec(ctx, "CREATE ROLE "+pg.Ident(r.Name)+" WITH "+strings.Join(attrs, " ")); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("role %s not created: %s", r.Name, sqlMessage(err)))
			continue
		}
		if r.Comment != "" {
			_, _ = dst.Exec(ctx, "COMMENT ON ROLE "+pg.Ident(r.Name)+" IS "+pg.Literal(r.Comment))
		}
		existing[r.Name] = true
		res.Created = append(res.Created, r.Name)
	}
	// Memberships.
	mrows, err := src.Query(ctx, `
SELECT r.rolname, m.rolname, am.admin_option
FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
WHERE m.oid > 10 AND (r.rolname !~ '^pg_' OR r.rolname IN ('pg_read_all_data', 'pg_write_all_data', 'pg_monitor',
      'pg_read_all_settings', 'pg_read_all_stats', 'pg_stat_scan_tables', 'pg_signal_backend'))`)
	if err != nil {
		return res, fmt.Errorf("read role memberships on source: %w", err)
	}
	var role, member string
	var admin bool
	var grants []string
	if _, err := pgx.ForEachRow(mrows, []any{&role, &member, &admin}, func() error {
		if existing[role] && existing[member] && !reservedRole(member) {
			g := "GRANT " + pg.Ident(role) + " TO " + pg.Ident(member)
			if admin {
				g += " WITH ADMIN OPTION"
			}
			grants = append(grants, g)
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("read role memberships on source: %w", err)
	}
	for _, g := range grants {
		if _, err := dst.Exec(ctx, g); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %s", g, sqlMessage(err)))
		}
	}
	// Role-wide settings (ALTER ROLE … SET), for roles we created.
	created := map[string]bool{}
	for _, n := range res.Created {
		created[n] = true
	}
	srows, err := src.Query(ctx, `SELECT r.rolname, unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = 0`)
	if err == nil {
		var n, kv string
		var sets []string
		_, _ = pgx.ForEachRow(srows, []any{&n, &kv}, func() error {
			if created[n] {
				if set, ok := setClause(kv); ok {
					sets = append(sets, "ALTER ROLE "+pg.Ident(n)+" SET "+set)
				}
			}
			return nil
		})
		for _, s := range sets {
			if _, err := dst.Exec(ctx, s); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %s", s, sqlMessage(err)))
			}
		}
	}
	return res, nil
}

func sqlMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}
