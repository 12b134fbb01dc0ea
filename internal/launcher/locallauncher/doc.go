// Package locallauncher is the embedded launcher.Launcher: each job runs
// in a `<binary> worker --job-id ID --data-dir DIR` subprocess on this
// machine. The launch passes only the job id (and the data directory); the
// worker reads the job, and decrypts its credentials, from the store.
//
// Process model (decided here, relied on by internal/service):
//
//   - Every worker is the leader of its own process group (Setpgid), with
//     stdin from /dev/null and stdout/stderr appended to
//     DIR/workers/<job-id>.log (0600). A terminal's Ctrl-C therefore
//     reaches `serve` only, and serve decides what happens to its workers;
//     Stop signals the whole group, so the PostgreSQL client tools a worker
//     runs (pg_dump, pg_restore) end with it.
//   - A worker survives a crash of `serve` (kill -9, OOM): it keeps
//     running its job, heartbeating and writing progress into the store.
//     The worker id is the pid; a restarted serve adopts such workers
//     through Options.Known (the pids recorded on active jobs), accepting a
//     pid only while /proc/<pid>/cmdline still names `worker` and the job
//     id, so a reused pid is never mistaken for a worker.
//   - Stop sends SIGTERM to the group, waits Options.Grace, then SIGKILL.
//     Stopping a worker that is already gone is not an error.
//   - List returns live children plus adopted workers that are alive.
//
// The environment of a worker is serve's, minus variables that could hand
// it someone else's credentials (PGPASSWORD, SEREN_API_KEY, SEREN_SOURCE_URL,
// SEREN_TARGET_URL, …): a worker's only credentials are its job's.
//
// It needs a Unix system; the pid-reuse check needs Linux's /proc (other
// systems only check that the pid is alive).
package locallauncher
