package selection

import (
	"fmt"
	"strings"
)

// Flags are the raw selection inputs, exactly as the CLI flags (and the job
// API's filter) spell them. Table names are "db.table" (schema public) or
// "db.schema.table"; TableFilters are "[db.]table:SQL predicate";
// TimeFilters are "[db.]table:column:6 months".
type Flags struct {
	IncludeDatabases []string
	ExcludeDatabases []string
	IncludeTables    []string
	ExcludeTables    []string
	SchemaOnlyTables []string
	TableFilters     []string
	TimeFilters      []string
	// ConfigFile is a TOML rules file; flags are merged on top of it.
	ConfigFile string
}

// Rules is the parsed selection. A nil *Rules selects everything (except
// the template databases, which are never replicated). Rules is immutable
// once built and safe for concurrent use.
type Rules struct {
	includeDBs, excludeDBs                   []dbEntry
	includeTables, excludeTables, schemaOnly []refEntry
	tableFilters                             []filterEntry
	timeFilters                              []timeEntry
}

// TableRule says what happens to one table.
type TableRule struct {
	Include    bool   // copy it at all
	SchemaOnly bool   // structure only, no rows
	Predicate  string // SQL boolean expression rows must satisfy ("" = all rows)
}

// origin says where a rule came from, for error messages.
type origin struct {
	where string // "--include-tables" or "rules.toml: databases.app.include_tables"
	label string // "--include-tables" or "databases.app.include_tables in rules.toml"
	value string // the value as written
	flag  bool   // given on the command line (not in the rules file)
}

func flagOrigin(flag, value string) origin {
	return origin{where: "--" + flag, label: "--" + flag, value: value, flag: true}
}

// errorf names where the value came from and the value itself.
func (o origin) errorf(format string, a ...any) error {
	return fmt.Errorf("%s %q: %s", o.where, o.value, fmt.Sprintf(format, a...))
}

// wrap names where the value came from, the value, and the parse error.
func (o origin) wrap(err error) error {
	return fmt.Errorf("%s %q: %w", o.where, o.value, err)
}

type dbEntry struct {
	name string
	from origin
}

type refEntry struct {
	ref  tableRef
	from origin
}

type filterEntry struct {
	ref   tableRef
	where string
	from  origin
}

func (f filterEntry) String() string { return f.ref.String() + ":" + f.where }

type timeEntry struct {
	ref    tableRef
	column string
	win    window
	from   origin
}

func (t timeEntry) String() string {
	return t.ref.String() + ":" + quoteName(t.column) + ":" + t.win.String()
}

func isTemplate(db string) bool { return db == "template0" || db == "template1" }

// Build parses flags (over the rules file, if any) into Rules. Errors name
// the flag (or the rules-file key) and the offending value.
func Build(f Flags) (*Rules, error) {
	file := &Rules{}
	if f.ConfigFile != "" {
		var err error
		if file, err = loadFile(f.ConfigFile); err != nil {
			return nil, err
		}
	}
	cli, err := fromFlags(f)
	if err != nil {
		return nil, err
	}
	r, err := merge(file, cli)
	if err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// fromFlags parses the command-line lists (without the rules file).
func fromFlags(f Flags) (*Rules, error) {
	r := &Rules{}
	dbs := func(flag string, vals []string) []dbEntry {
		var out []dbEntry
		for _, v := range vals {
			name := strings.TrimSpace(v)
			if name == "" {
				continue // "a,,b" or a trailing comma
			}
			out = append(out, dbEntry{name: name, from: flagOrigin(flag, v)})
		}
		return out
	}
	refs := func(flag string, vals []string) ([]refEntry, error) {
		var out []refEntry
		for _, v := range vals {
			if strings.TrimSpace(v) == "" {
				continue
			}
			o := flagOrigin(flag, v)
			ref, err := parseRef(v)
			if err != nil {
				return nil, o.wrap(err)
			}
			out = append(out, refEntry{ref: ref, from: o})
		}
		return out, nil
	}
	r.includeDBs = dbs("include-databases", f.IncludeDatabases)
	r.excludeDBs = dbs("exclude-databases", f.ExcludeDatabases)
	var err error
	if r.includeTables, err = refs("include-tables", f.IncludeTables); err != nil {
		return nil, err
	}
	if r.excludeTables, err = refs("exclude-tables", f.ExcludeTables); err != nil {
		return nil, err
	}
	if r.schemaOnly, err = refs("schema-only-tables", f.SchemaOnlyTables); err != nil {
		return nil, err
	}
	for _, v := range f.TableFilters {
		o := flagOrigin("table-filter", v)
		ref, pred, err := parseTableFilter(v)
		if err != nil {
			return nil, o.wrap(err)
		}
		r.tableFilters = append(r.tableFilters, filterEntry{ref: ref, where: pred, from: o})
	}
	for _, v := range f.TimeFilters {
		o := flagOrigin("time-filter", v)
		ref, col, win, err := parseTimeFilter(v)
		if err != nil {
			return nil, o.wrap(err)
		}
		r.timeFilters = append(r.timeFilters, timeEntry{ref: ref, column: col, win: win, from: o})
	}
	if len(r.includeDBs) > 0 && len(r.excludeDBs) > 0 {
		return nil, conflict(r.excludeDBs[0].from, r.includeDBs[0].from)
	}
	return r, nil
}

func conflict(o, other origin) error {
	return o.errorf("cannot be combined with %s (%q): include and exclude lists are mutually exclusive; use one or the other", other.label, other.value)
}

// tableConflict rejects an include-tables and an exclude-tables entry that
// can apply to the same database (the same one, or either for every
// database). Different databases may use different kinds of list.
func tableConflict(include, exclude []refEntry) error {
	for _, x := range exclude {
		for _, i := range include {
			if x.ref.db != "" && i.ref.db != "" && x.ref.db != i.ref.db {
				continue
			}
			// Blame the one typed on the command line, if only one was.
			blame, other := x.from, i.from
			if i.from.flag && !x.from.flag {
				blame, other = i.from, x.from
			}
			return blame.errorf("cannot be combined with %s (%q): include and exclude table lists for one database are mutually exclusive; use one or the other",
				other.label, other.value)
		}
	}
	return nil
}

// merge lays the command-line rules over the rules file's: lists are
// added, except that --include-databases replaces the file's database
// selection (include_databases and exclude_databases) entirely.
func merge(file, cli *Rules) (*Rules, error) {
	r := &Rules{}
	if len(cli.includeDBs) > 0 {
		r.includeDBs = dedupe(cli.includeDBs, func(e dbEntry) string { return e.name })
	} else {
		if len(file.includeDBs) > 0 && len(cli.excludeDBs) > 0 {
			return nil, conflict(cli.excludeDBs[0].from, file.includeDBs[0].from)
		}
		r.includeDBs = dedupe(file.includeDBs, func(e dbEntry) string { return e.name })
		r.excludeDBs = dedupe(append(clip(file.excludeDBs), cli.excludeDBs...), func(e dbEntry) string { return e.name })
	}
	refKey := func(e refEntry) string { return e.ref.key() }
	r.includeTables = dedupe(append(clip(file.includeTables), cli.includeTables...), refKey)
	r.excludeTables = dedupe(append(clip(file.excludeTables), cli.excludeTables...), refKey)
	r.schemaOnly = dedupe(append(clip(file.schemaOnly), cli.schemaOnly...), refKey)
	r.tableFilters = dedupe(append(clip(file.tableFilters), cli.tableFilters...),
		func(e filterEntry) string { return e.ref.key() + "\x00" + e.where })
	r.timeFilters = dedupe(append(clip(file.timeFilters), cli.timeFilters...),
		func(e timeEntry) string { return e.ref.key() + "\x00" + e.column + "\x00" + e.win.String() })
	if err := tableConflict(r.includeTables, r.excludeTables); err != nil {
		return nil, err
	}
	return r, nil
}

// clip returns s with no spare capacity, so append never writes into it.
func clip[T any](s []T) []T { return s[:len(s):len(s)] }

func dedupe[T any](in []T, key func(T) string) []T {
	seen := make(map[string]bool, len(in))
	var out []T
	for _, e := range in {
		k := key(e)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	return out
}

// check rejects merged rules that contradict themselves.
func (r *Rules) check() error {
	for _, e := range r.includeDBs {
		if isTemplate(e.name) {
			return e.from.errorf("template databases are never replicated")
		}
	}
	for _, s := range r.schemaOnly {
		for _, x := range r.excludeTables {
			if s.ref == x.ref {
				return s.from.errorf("the table is also excluded by %s (%q)", x.from.label, x.from.value)
			}
		}
	}
	// A table rule typed on the command line for a database that is not
	// replicated is almost certainly a typo; say so rather than ignore it.
	// (Rules-file entries are exempt: a file may describe many databases
	// of which a run selects a few.)
	var named []refEntry
	named = append(named, r.includeTables...)
	named = append(named, r.schemaOnly...)
	for _, f := range r.tableFilters {
		named = append(named, refEntry{ref: f.ref, from: f.from})
	}
	for _, t := range r.timeFilters {
		named = append(named, refEntry{ref: t.ref, from: t.from})
	}
	for _, e := range named {
		if !e.from.flag || e.ref.db == "" {
			continue
		}
		if why := r.dbReason(e.ref.db); why != "" {
			return e.from.errorf("database %q is not replicated: %s", e.ref.db, why)
		}
	}
	return nil
}

// Database reports whether database name is replicated. The template
// databases never are, and the postgres database only when a rule names it
// (PostgresLeftOut); otherwise a nil *Rules selects every database.
func (r *Rules) Database(name string) bool { return r.dbReason(name) == "" }

// DatabaseReason says why database name is not replicated ("" if it is).
func (r *Rules) DatabaseReason(name string) string { return r.dbReason(name) }

// dbReason says why a database is not replicated ("" if it is).
func (r *Rules) dbReason(name string) string {
	if isTemplate(name) {
		return "template databases are never replicated"
	}
	if r == nil {
		if name == "postgres" {
			return PostgresLeftOut
		}
		return ""
	}
	if len(r.includeDBs) > 0 {
		found := false
		for _, e := range r.includeDBs {
			found = found || e.name == name
		}
		if !found {
			return "it is not in " + r.includeDBs[0].from.label
		}
	} else if only := r.implicitDBs(); only != nil && !only[name] {
		return "include-tables names no table in it (add it to --include-databases, or name its tables)"
	}
	if name == "postgres" && !r.namesDatabase(name) {
		return PostgresLeftOut
	}
	for _, e := range r.excludeDBs {
		if e.name == name {
			return "it is excluded by " + e.from.label
		}
	}
	return ""
}

// PostgresLeftOut is why the postgres database is not replicated unless a
// rule names it: it is the maintenance database every server has, and on
// hosted targets it belongs to the provider (the original tool, v3, left
// it out too).
const PostgresLeftOut = "the postgres database is left out unless named (--include-databases postgres)"

// namesDatabase reports whether an include rule names database db:
// include-databases, or include-tables entries that name their database.
func (r *Rules) namesDatabase(db string) bool {
	if r == nil {
		return false
	}
	for _, e := range r.includeDBs {
		if e.name == db {
			return true
		}
	}
	return r.implicitDBs()[db]
}

// implicitDBs is the set of databases that include-tables names, when it
// alone decides the databases: no include-databases list, and every
// include-tables entry names its database. Otherwise nil.
func (r *Rules) implicitDBs() map[string]bool {
	if len(r.includeDBs) > 0 || len(r.includeTables) == 0 {
		return nil
	}
	only := make(map[string]bool)
	for _, e := range r.includeTables {
		if e.ref.db == "" {
			return nil
		}
		only[e.ref.db] = true
	}
	return only
}

// Table decides what happens to table schema.table of database db.
//
// A table is left out when its database is not replicated, when an
// exclude-tables entry names it, or when include-tables entries apply to
// its database and none (nor a schema-only entry) names it. A schema-only
// table is included without rows. Otherwise every table filter and time
// filter that names it is ANDed into Predicate, each in parentheses.
func (r *Rules) Table(db, schema, table string) TableRule {
	if !r.Database(db) {
		return TableRule{}
	}
	if r == nil {
		return TableRule{Include: true}
	}
	for _, e := range r.excludeTables {
		if e.ref.matches(db, schema, table) {
			return TableRule{}
		}
	}
	schemaOnly := false
	for _, e := range r.schemaOnly {
		schemaOnly = schemaOnly || e.ref.matches(db, schema, table)
	}
	restricted, named := false, false
	for _, e := range r.includeTables {
		restricted = restricted || e.ref.appliesTo(db)
		named = named || e.ref.matches(db, schema, table)
	}
	if restricted && !named && !schemaOnly {
		return TableRule{}
	}
	if schemaOnly {
		return TableRule{Include: true, SchemaOnly: true}
	}
	var preds []string
	for _, f := range r.tableFilters {
		if f.ref.matches(db, schema, table) {
			preds = append(preds, "("+f.where+")")
		}
	}
	for _, t := range r.timeFilters {
		if t.ref.matches(db, schema, table) {
			preds = append(preds, "("+timePredicate(t.column, t.win)+")")
		}
	}
	return TableRule{Include: true, Predicate: strings.Join(preds, " AND ")}
}

// HasTableRules reports whether any table-level rule (include, exclude,
// schema-only, table or time filter) applies to database db, i.e. whether
// the database must be copied table by table rather than whole.
func (r *Rules) HasTableRules(db string) bool {
	if r == nil {
		return false
	}
	for _, l := range [][]refEntry{r.includeTables, r.excludeTables, r.schemaOnly} {
		for _, e := range l {
			if e.ref.appliesTo(db) {
				return true
			}
		}
	}
	for _, f := range r.tableFilters {
		if f.ref.appliesTo(db) {
			return true
		}
	}
	for _, t := range r.timeFilters {
		if t.ref.appliesTo(db) {
			return true
		}
	}
	return false
}

// Empty reports whether there is no rule at all (everything is selected).
func (r *Rules) Empty() bool {
	return r == nil || len(r.includeDBs)+len(r.excludeDBs)+len(r.includeTables)+len(r.excludeTables)+
		len(r.schemaOnly)+len(r.tableFilters)+len(r.timeFilters) == 0
}

// Summary describes the rules for logs, one line per rule; nil when there
// is none.
func (r *Rules) Summary() []string {
	if r.Empty() {
		return nil
	}
	var out []string
	names := func(l []dbEntry) string {
		s := make([]string, len(l))
		for i, e := range l {
			s[i] = e.name
		}
		return strings.Join(s, ", ")
	}
	refs := func(l []refEntry) string {
		s := make([]string, len(l))
		for i, e := range l {
			s[i] = e.ref.human()
		}
		return strings.Join(s, ", ")
	}
	switch {
	case len(r.includeDBs) > 0:
		out = append(out, "databases: only "+names(r.includeDBs))
	case r.implicitDBs() != nil:
		seen := map[string]bool{}
		var l []string
		for _, e := range r.includeTables {
			if !seen[e.ref.db] {
				seen[e.ref.db] = true
				l = append(l, e.ref.db)
			}
		}
		out = append(out, "databases: only "+strings.Join(l, ", ")+" (those named by include-tables)")
	}
	if len(r.excludeDBs) > 0 {
		out = append(out, "databases: all except "+names(r.excludeDBs))
	}
	if len(r.includeTables) > 0 {
		out = append(out, "tables: only "+refs(r.includeTables))
	}
	if len(r.excludeTables) > 0 {
		out = append(out, "tables: all except "+refs(r.excludeTables))
	}
	if len(r.schemaOnly) > 0 {
		out = append(out, "schema only, no rows: "+refs(r.schemaOnly))
	}
	for _, f := range r.tableFilters {
		out = append(out, "rows of "+f.ref.human()+" where "+f.where)
	}
	for _, t := range r.timeFilters {
		out = append(out, "rows of "+t.ref.human()+" where "+t.column+" is within the last "+t.win.String())
	}
	return out
}

// Flags returns the rules in flag form, rules file included (ConfigFile
// is empty), so that Build(r.Flags()) makes the same decisions. A job
// request carries this form. A nil *Rules gives the zero Flags.
func (r *Rules) Flags() Flags {
	var f Flags
	if r == nil {
		return f
	}
	for _, e := range r.includeDBs {
		f.IncludeDatabases = append(f.IncludeDatabases, e.name)
	}
	for _, e := range r.excludeDBs {
		f.ExcludeDatabases = append(f.ExcludeDatabases, e.name)
	}
	// Rules for databases that are not replicated (a rules file may
	// describe more databases than a run selects) decide nothing; leave
	// them out, as Build would reject them on the command line.
	inert := func(t tableRef) bool { return t.db != "" && !r.Database(t.db) }
	refs := func(l []refEntry) []string {
		var s []string
		for _, e := range l {
			if !inert(e.ref) {
				s = append(s, e.ref.String())
			}
		}
		return s
	}
	f.IncludeTables = refs(r.includeTables)
	f.ExcludeTables = refs(r.excludeTables)
	f.SchemaOnlyTables = refs(r.schemaOnly)
	for _, e := range r.tableFilters {
		if !inert(e.ref) {
			f.TableFilters = append(f.TableFilters, e.String())
		}
	}
	for _, e := range r.timeFilters {
		if !inert(e.ref) {
			f.TimeFilters = append(f.TimeFilters, e.String())
		}
	}
	return f
}
