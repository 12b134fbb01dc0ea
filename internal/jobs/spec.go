package jobs

// SchemaVersion is the only request schema version accepted.
const SchemaVersion = "1.0"

// Filter selects what a job replicates. Table names are "db.table" or
// "db.schema.table"; TableFilters are "[db.]table:SQL predicate";
// TimeFilters are "[db.]table:column:6 months" — the CLI's syntax.
type Filter struct {
	IncludeDatabases []string `json:"include_databases,omitempty"`
	ExcludeDatabases []string `json:"exclude_databases,omitempty"`
	IncludeTables    []string `json:"include_tables,omitempty"`
	ExcludeTables    []string `json:"exclude_tables,omitempty"`
	SchemaOnlyTables []string `json:"schema_only_tables,omitempty"`
	TableFilters     []string `json:"table_filters,omitempty"`
	TimeFilters      []string `json:"time_filters,omitempty"`
}

// Options tune a job.
type Options struct {
	DropExisting bool `json:"drop_existing,omitempty"`
	// EnableSync and NoSync are two spellings of one choice; NoSync wins.
	EnableSync         *bool `json:"enable_sync,omitempty"`
	NoSync             bool  `json:"no_sync,omitempty"`
	EstimatedSizeBytes int64 `json:"estimated_size_bytes,omitempty"`
	// JobTimeout in seconds (default by EstimatedSizeBytes, DefaultTimeoutFor).
	JobTimeout int64 `json:"job_timeout,omitempty"`
	// Yes is sent by the original (v3) client for its --yes flag. A job
	// never asks for confirmation (submitting it is the confirmation), so
	// either value is accepted; DecodeRequest drops it.
	Yes *bool `json:"yes,omitempty"`
}

// SyncEnabled reports whether init should start continuous sync.
func (o Options) SyncEnabled() bool {
	if o.NoSync {
		return false
	}
	if o.EnableSync != nil {
		return *o.EnableSync
	}
	return true
}
