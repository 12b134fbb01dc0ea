// Package cmdutil holds what several commands share: connection and
// selection flags, and the helpers that turn them into engine options.
package cmdutil

import (
	"context"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// ConnFlags are --source and --target.
type ConnFlags struct {
	Source, Target string
}

// Add registers the flags on cmd. Environment variables SEREN_SOURCE_URL and
// SEREN_TARGET_URL are used when a flag is not given (keeps passwords out
// of shell history and process arguments).
func (f *ConnFlags) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.Source, "source", "", "source PostgreSQL URL (or env SEREN_SOURCE_URL)")
	cmd.Flags().StringVar(&f.Target, "target", "", "target PostgreSQL URL (or env SEREN_TARGET_URL)")
}

// Parse returns the parsed URLs; both are required.
func (f *ConnFlags) Parse() (src, dst pg.URL, err error) {
	if src, err = parseOne("source", f.Source, "SEREN_SOURCE_URL"); err != nil {
		return
	}
	dst, err = parseOne("target", f.Target, "SEREN_TARGET_URL")
	return
}

// ParseSource returns only the source URL.
func (f *ConnFlags) ParseSource() (pg.URL, error) {
	return parseOne("source", f.Source, "SEREN_SOURCE_URL")
}

func parseOne(name, v, env string) (pg.URL, error) {
	if v == "" {
		v = os.Getenv(env)
	}
	if v == "" {
		return pg.URL{}, clio.Usagef("--%s is required (a postgres:// URL or host=… dbname=… string, or set %s)", name, env)
	}
	parse := pg.ParseURL
	if pg.IsKeyValue(v) {
		parse = pg.ParseKeyValue // libpq's host=… dbname=… form
	}
	u, err := parse(v)
	if err != nil {
		return pg.URL{}, clio.Usagef("--%s: %v", name, err)
	}
	return u, nil
}

// SelectionFlags are the database/table selection flags.
type SelectionFlags struct {
	selection.Flags
}

// Add registers the flags on cmd.
func (f *SelectionFlags) Add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.IncludeDatabases, "include-databases", nil, "only these databases (comma separated)")
	fl.StringSliceVar(&f.ExcludeDatabases, "exclude-databases", nil, "all databases except these")
	fl.StringSliceVar(&f.IncludeTables, "include-tables", nil, "only these tables: db.table or db.schema.table")
	fl.StringSliceVar(&f.ExcludeTables, "exclude-tables", nil, "all tables except these: db.table or db.schema.table")
	fl.StringSliceVar(&f.SchemaOnlyTables, "schema-only-tables", nil, "copy the structure but no rows of these tables")
	fl.StringArrayVar(&f.TableFilters, "table-filter", nil, `copy only rows matching a predicate: "[db.]table:SQL predicate" (repeatable)`)
	fl.StringArrayVar(&f.TimeFilters, "time-filter", nil, `copy only recent rows: "[db.]table:column:6 months" (repeatable)`)
	fl.StringVar(&f.ConfigFile, "config", "", "TOML rules file (flags are merged on top)")
	for _, name := range []string{"include-databases", "exclude-databases"} {
		_ = cmd.RegisterFlagCompletionFunc(name, completeDatabases)
	}
}

// Rules parses the flags into selection rules.
func (f *SelectionFlags) Rules() (*selection.Rules, error) {
	r, err := selection.Build(f.Flags)
	if err != nil {
		return nil, clio.Usage(err)
	}
	return r, nil
}

// Given reports whether any selection flag was given.
func (f *SelectionFlags) Given() bool {
	return len(f.IncludeDatabases)+len(f.ExcludeDatabases)+len(f.IncludeTables)+len(f.ExcludeTables)+
		len(f.SchemaOnlyTables)+len(f.TableFilters)+len(f.TimeFilters) > 0 || f.ConfigFile != ""
}

// DefaultJobs is the default number of parallel streams.
func DefaultJobs() int { return runtime.NumCPU() }

// Parse returns both URLs and the selection rules: what every command that
// works on a source/target pair starts with.
func Parse(conn *ConnFlags, sel *SelectionFlags) (src, dst pg.URL, rules *selection.Rules, err error) {
	if src, dst, err = conn.Parse(); err != nil {
		return
	}
	rules, err = sel.Rules()
	return
}

// completeDatabases completes database names from the source given by
// --source or SEREN_SOURCE_URL.
func completeDatabases(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	v := ""
	if f := cmd.Flags().Lookup("source"); f != nil {
		v = f.Value.String()
	}
	src, err := parseOne("source", v, "SEREN_SOURCE_URL")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
	defer cancel()
	dbs, err := logical.Databases(ctx, src, nil)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return dbs, cobra.ShellCompDirectiveNoFileComp
}
