package initcmd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// pickDatabases lets the user choose databases by number or name; bad
// input is said and asked again, end of input cancels.
func pickDatabases(ctx context.Context, opts *Options, est []replicator.DatabaseEstimate) ([]replicator.DatabaseEstimate, error) {
	io := opts.IO
	if len(est) <= 1 {
		return est, nil
	}
	fmt.Fprintln(io.ErrOut, "Databases on the source:")
	names := make([]string, len(est))
	for i, d := range est {
		names[i] = d.Name
		fmt.Fprintf(io.ErrOut, "  %d) %s (%s)\n", i+1, d.Name, replicator.HumanBytes(d.SizeBytes))
	}
	for {
		ans, err := io.Ask(ctx, "Copy which? (numbers or names, comma separated; Enter for all): ")
		if err != nil {
			return nil, err
		}
		if ans == "" {
			return est, nil
		}
		idx, bad := pick(ans, names)
		if bad != "" {
			fmt.Fprintln(io.ErrOut, bad)
			continue
		}
		var picked []replicator.DatabaseEstimate
		for _, i := range idx {
			picked = append(picked, est[i])
			opts.Selection.IncludeDatabases = append(opts.Selection.IncludeDatabases, est[i].Name)
		}
		return picked, nil
	}
}

// pickTables lists the tables of the chosen databases and asks which to
// leave out, by number or name (db.table or db.schema.table).
func pickTables(ctx context.Context, opts *Options, src pg.URL, est []replicator.DatabaseEstimate) error {
	io := opts.IO
	var tables []string // db.schema.table
	for _, d := range est {
		ts, err := cmdutil.ListTables(ctx, src.WithDatabase(d.Name))
		if err != nil {
			return err
		}
		for _, t := range ts {
			tables = append(tables, d.Name+"."+t)
		}
	}
	if len(tables) == 0 {
		return nil
	}
	fmt.Fprintln(io.ErrOut, "Tables:")
	for i, t := range tables {
		fmt.Fprintf(io.ErrOut, "  %d) %s\n", i+1, t)
	}
	for {
		ans, err := io.Ask(ctx, "Tables to leave out? (numbers or names, comma separated; Enter for none): ")
		if err != nil {
			return err
		}
		if ans == "" {
			return nil
		}
		idx, bad := pick(ans, tables, shortNames(tables)...)
		if bad != "" {
			fmt.Fprintln(io.ErrOut, bad)
			continue
		}
		for _, i := range idx {
			opts.Selection.ExcludeTables = append(opts.Selection.ExcludeTables, tables[i])
		}
		return nil
	}
}

// shortNames maps db.public.table to db.table (what users type).
func shortNames(tables []string) []string {
	out := make([]string, len(tables))
	for i, t := range tables {
		if db, rest, ok := strings.Cut(t, ".public."); ok {
			out[i] = db + "." + rest
		}
	}
	return out
}

// pick resolves a comma-separated answer of 1-based numbers or names
// (names[i] or alias[i]) to indexes; bad says what was wrong ("" if
// nothing).
func pick(ans string, names []string, alias ...string) (idx []int, bad string) {
	for _, f := range strings.Split(ans, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		i := -1
		if n, err := strconv.Atoi(f); err == nil {
			if n < 1 || n > len(names) {
				return nil, fmt.Sprintf("%d is not between 1 and %d; try again.", n, len(names))
			}
			i = n - 1
		} else if i = slices.Index(names, f); i < 0 && len(alias) > 0 {
			i = slices.Index(alias, f)
		}
		if i < 0 {
			msg := fmt.Sprintf("%q is not in the list", f)
			if s := clio.Closest(f, append(slices.Clone(names), alias...)); s != "" {
				msg += "; did you mean " + s + "?"
			}
			return nil, msg + " Try again."
		}
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	return idx, ""
}

// fix is a change the user chose to make on the source before the copy.
type fix struct{ db, sql string }

// checkFirst validates before anything is asked: it shows blockers and
// warnings, stops on blockers, and lets the user decide about each table
// that sync cannot carry fully (no key or replica identity): REPLICA
// IDENTITY FULL, leave it out, or insert-only. It returns the fixes to
// apply once the user has confirmed.
func checkFirst(ctx context.Context, opts *Options, eng *replicator.Options) ([]fix, error) {
	io := opts.IO
	ps, err := logical.Validate(ctx, logical.ValidateOptions{Source: eng.Source, Target: eng.Target, Rules: eng.Rules, NoSync: eng.NoSync})
	if err != nil {
		return nil, err
	}
	if len(ps) > 0 {
		fmt.Fprintln(io.ErrOut)
		if err := cmdutil.WriteProblems(io.ErrOut, ps, io.ColorErr()); err != nil {
			return nil, err
		}
	}
	if logical.HasBlocker(ps) {
		return nil, clio.WithCode(clio.ExitProblems, hint.Wrap(fmt.Errorf("init cannot start: blocking problems above"),
			"apply each fix listed above, then run init again (validate shows the same list)"))
	}
	var fixes []fix
	excluded := false
	for _, p := range ps {
		sql, ok := replicaIdentityFix(p)
		if !ok || eng.NoSync {
			continue
		}
		name := p.Database + "." + strings.TrimPrefix(p.Object, "table ")
		for {
			ans, err := io.Ask(ctx, fmt.Sprintf("%s has no key or replica identity: [f] set REPLICA IDENTITY FULL on the source, [e] leave it out, [i] copy it and accept insert-only sync? ", name))
			if err != nil {
				return nil, err
			}
			switch strings.ToLower(ans) {
			case "f":
				fixes = append(fixes, fix{p.Database, sql})
			case "e":
				opts.Selection.ExcludeTables = append(opts.Selection.ExcludeTables, name)
				excluded = true
			case "i":
			default:
				fmt.Fprintln(io.ErrOut, "Answer f, e or i.")
				continue
			}
			break
		}
	}
	if excluded {
		if eng.Rules, err = opts.Selection.Rules(); err != nil {
			return nil, err
		}
	}
	return fixes, nil
}

// replicaIdentityFix returns the ALTER TABLE … REPLICA IDENTITY FULL of a
// "no key or replica identity" warning.
func replicaIdentityFix(p logical.Problem) (string, bool) {
	sql, _, _ := strings.Cut(p.Fix, ";")
	if p.Severity == logical.Blocker || p.Server != "source" || !strings.HasPrefix(p.Object, "table ") ||
		!strings.HasPrefix(sql, "ALTER TABLE ") || !strings.HasSuffix(sql, " REPLICA IDENTITY FULL") {
		return "", false
	}
	return sql, true
}

// applyFixes runs the chosen fixes on the source.
func applyFixes(ctx context.Context, src pg.URL, fixes []fix) error {
	for _, f := range fixes {
		c, err := pg.Connect(ctx, src.WithDatabase(f.db), "source")
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, f.sql)
		c.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("source %s: %s: %w", f.db, f.sql, err)
		}
	}
	return nil
}
