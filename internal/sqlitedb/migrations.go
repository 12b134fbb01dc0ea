package sqlitedb

// migrations is the schema of every embedded backend, in order. Version N
// is migrations[N-1]. Append only: never edit or reorder a released entry.
// Times are Unix nanoseconds (INTEGER), UTC.
var migrations = []string{
	// 1: job store (jobstore/sqlitestore). The job is stored whole as JSON
	// in doc; the columns beside it are what queries filter and sort on.
	// Credentials (sealed, json:"-") live in their own BLOB column.
	`CREATE TABLE jobs (
		id              TEXT PRIMARY KEY,
		owner           TEXT NOT NULL,
		idempotency_key TEXT,
		status          TEXT NOT NULL,
		created_at      INTEGER NOT NULL,
		expires_at      INTEGER NOT NULL,
		version         INTEGER NOT NULL,
		credentials     BLOB,
		doc             TEXT NOT NULL
	) STRICT;
	CREATE INDEX jobs_owner_created ON jobs (owner, created_at DESC, id DESC);
	CREATE INDEX jobs_owner_status_created ON jobs (owner, status, created_at DESC, id DESC);
	CREATE INDEX jobs_active ON jobs (status, created_at) WHERE status IN ('provisioning', 'running');
	CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
	CREATE INDEX jobs_expires ON jobs (expires_at);`,

	// 2: provisioning queue (queue/sqlitequeue). A message is leased by
	// moving visible_at into the future and giving it a fresh receipt.
	`CREATE TABLE queue_messages (
		id            INTEGER PRIMARY KEY AUTOINCREMENT,
		queue         TEXT NOT NULL,
		job_id        TEXT NOT NULL,
		visible_at    INTEGER NOT NULL,
		receive_count INTEGER NOT NULL DEFAULT 0,
		receipt       TEXT,
		sent_at       INTEGER NOT NULL
	) STRICT;
	CREATE INDEX queue_messages_visible ON queue_messages (queue, visible_at, id);`,

	// 3: job log lines (joblog/sqlitelog), deleted with their job.
	`CREATE TABLE job_log (
		job_id TEXT NOT NULL,
		seq    INTEGER NOT NULL,
		at     INTEGER NOT NULL,
		text   TEXT NOT NULL,
		PRIMARY KEY (job_id, seq)
	) STRICT, WITHOUT ROWID;
	CREATE TRIGGER jobs_delete_log AFTER DELETE ON jobs
	BEGIN
		DELETE FROM job_log WHERE job_id = OLD.id;
	END;`,

	// 4: API keys (apikeys/sqlitekeys): only the SHA-256 of each secret.
	`CREATE TABLE api_keys (
		id           TEXT PRIMARY KEY,
		name         TEXT NOT NULL,
		hash         BLOB NOT NULL UNIQUE,
		created_at   INTEGER NOT NULL,
		revoked_at   INTEGER,
		last_used_at INTEGER
	) STRICT;
	CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;`,

	// 5: job store lookups that stay cheap however many jobs wait in the
	// queue. job_counters.active is the number of provisioning or running
	// jobs, kept by triggers in the same transaction as the change (the
	// concurrent-job limit reads it on every submit instead of counting).
	// worker_id mirrors doc's worker_id, so the jobs that have a worker can
	// be listed from a small index rather than by decoding every queued job.
	`ALTER TABLE jobs ADD COLUMN worker_id TEXT;
	UPDATE jobs SET worker_id = NULLIF(json_extract(doc, '$.worker_id'), '');
	CREATE INDEX jobs_active_worker ON jobs (created_at, id)
		WHERE status IN ('provisioning', 'running') AND worker_id IS NOT NULL;
	CREATE TABLE job_counters (
		name  TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	) STRICT, WITHOUT ROWID;
	INSERT INTO job_counters (name, value)
		SELECT 'active', COUNT(*) FROM jobs WHERE status IN ('provisioning', 'running');
	CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
	WHEN NEW.status IN ('provisioning', 'running')
	BEGIN
		UPDATE job_counters SET value = value + 1 WHERE name = 'active';
	END;
	CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs
	WHEN (OLD.status IN ('provisioning', 'running')) <> (NEW.status IN ('provisioning', 'running'))
	BEGIN
		UPDATE job_counters
		SET value = value + CASE WHEN NEW.status IN ('provisioning', 'running') THEN 1 ELSE -1 END
		WHERE name = 'active';
	END;
	CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
	WHEN OLD.status IN ('provisioning', 'running')
	BEGIN
		UPDATE job_counters SET value = value - 1 WHERE name = 'active';
	END;`,
	// N (append-only; the lead renumbers): principals (apikeys/sqlitekeys).
	// A key belongs to a principal (default: its name) and may be an
	// operator's. Jobs were owned by the submitting key's id; they now
	// belong to that key's principal, so every key of the principal (a
	// rotated one too) sees them. Where two keys of one principal (a
	// revoked key and its same-named successor) used the same
	// Idempotency-Key, only the newest job keeps it.
	`ALTER TABLE api_keys ADD COLUMN principal TEXT NOT NULL DEFAULT '';
	ALTER TABLE api_keys ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;
	UPDATE api_keys SET principal = name WHERE principal = '';
	CREATE INDEX api_keys_principal ON api_keys (principal) WHERE revoked_at IS NULL;
	UPDATE jobs SET idempotency_key = NULL, doc = json_remove(doc, '$.idempotency_key')
	WHERE idempotency_key IS NOT NULL AND EXISTS (
		SELECT 1 FROM jobs later
		JOIN api_keys kl ON kl.id = later.owner
		JOIN api_keys kj ON kj.id = jobs.owner
		WHERE kl.principal = kj.principal AND later.idempotency_key = jobs.idempotency_key
		AND (later.created_at > jobs.created_at OR (later.created_at = jobs.created_at AND later.id > jobs.id)));
	UPDATE jobs SET
		owner = (SELECT principal FROM api_keys WHERE id = jobs.owner),
		doc = json_set(doc, '$.owner', (SELECT principal FROM api_keys WHERE id = jobs.owner))
	WHERE owner IN (SELECT id FROM api_keys);`,
}
