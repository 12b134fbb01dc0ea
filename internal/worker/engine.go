package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
	"github.com/serenorg/postgres-seren-replicator/internal/verifier"
)

// Engine runs one engine command. Progress and log lines go to rep; the
// error, if any, says why the command failed (the worker redacts it).
type Engine interface {
	Run(ctx context.Context, cmd jobs.Command, opts replicator.Options, rep replicator.Reporter) error
}

// EngineFunc adapts a function to Engine.
type EngineFunc func(ctx context.Context, cmd jobs.Command, opts replicator.Options, rep replicator.Reporter) error

// Run implements Engine.
func (f EngineFunc) Run(ctx context.Context, cmd jobs.Command, opts replicator.Options, rep replicator.Reporter) error {
	return f(ctx, cmd, opts, rep)
}

// DefaultEngine runs the commands with the replication engine, as the CLI
// commands of the same names do.
type DefaultEngine struct{}

// Run implements Engine.
func (DefaultEngine) Run(ctx context.Context, cmd jobs.Command, opts replicator.Options, rep replicator.Reporter) error {
	switch cmd {
	case jobs.CommandInit:
		return runInit(ctx, opts, rep)
	case jobs.CommandValidate:
		return runValidate(ctx, opts, rep)
	case jobs.CommandSync:
		return runSync(ctx, opts, rep)
	case jobs.CommandStatus:
		return runStatus(ctx, opts, rep)
	case jobs.CommandVerify:
		return runVerify(ctx, opts, rep)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func runInit(ctx context.Context, opts replicator.Options, rep replicator.Reporter) error {
	sum, err := replicator.Init(ctx, opts, rep)
	if sum != nil {
		for _, p := range sum.Phases {
			db := p.Database
			if db == "" {
				db = "(server)"
			}
			rep.Logf("phase %s %s: %s %s", db, p.Name, p.Duration.Round(1e6), p.Detail)
		}
		if err == nil {
			rep.Logf("init done: %d databases, %d tables (%d resumed from an earlier attempt), %s in %s",
				len(sum.Databases), sum.Tables, sum.Skipped, replicator.HumanBytes(sum.Bytes), sum.Duration.Round(1e6))
		}
	}
	return err
}

func runValidate(ctx context.Context, opts replicator.Options, rep replicator.Reporter) error {
	rep.Progress(replicator.Progress{Phase: "validate"})
	ps, err := logical.Validate(ctx, logical.ValidateOptions{Source: opts.Source, Target: opts.Target, Rules: opts.Rules, NoSync: opts.NoSync, DropExisting: opts.DropExisting})
	if err != nil {
		return err
	}
	blockers := 0
	for _, p := range ps {
		where := p.Server
		if p.Database != "" {
			where += " database " + p.Database
		}
		if p.Object != "" {
			where += ", " + p.Object
		}
		rep.Logf("%s %s: %s (fix: %s)", strings.ToUpper(string(p.Severity)), where, p.Message, p.Fix)
		if p.Severity == logical.Blocker {
			blockers++
		}
	}
	if blockers > 0 {
		return hint.Wrap(fmt.Errorf("%d blocking problem(s) and %d warning(s): init/sync would fail", blockers, len(ps)-blockers),
			"apply each fix listed in the job's log, then validate again")
	}
	rep.Logf("validate: nothing blocks (%d warning(s))", len(ps))
	return nil
}

func runSync(ctx context.Context, opts replicator.Options, rep replicator.Reporter) error {
	dbs, err := logical.Databases(ctx, opts.Source, opts.Rules)
	if err != nil {
		return err
	}
	var errs []error
	for i, db := range dbs {
		rep.Progress(replicator.Progress{Phase: "sync", CurrentDatabase: db, DatabasesCompleted: i, DatabasesTotal: len(dbs)})
		res, err := logical.SyncDatabase(ctx, opts.Source.WithDatabase(db), opts.Target.WithDatabase(db), db,
			logical.SyncOptions{Rules: opts.Rules})
		if err != nil {
			rep.Logf("sync %s: failed: %v", db, err)
			errs = append(errs, fmt.Errorf("database %s: %w", db, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		rep.Logf("sync %s: %s (subscription %s, start LSN %s)", db, res.Action, res.Subscription, orDash(res.StartLSN))
		for _, n := range res.Notes {
			rep.Logf("sync %s: note: %s", db, n)
		}
	}
	rep.Progress(replicator.Progress{Phase: "done", DatabasesCompleted: len(dbs) - len(errs), DatabasesTotal: len(dbs)})
	return errors.Join(errs...)
}

func runStatus(ctx context.Context, opts replicator.Options, rep replicator.Reporter) error {
	dbs, err := logical.Databases(ctx, opts.Source, opts.Rules)
	if err != nil {
		return err
	}
	src, err := pg.Connect(ctx, logical.AdminURL(opts.Source), "source")
	if err != nil {
		return err
	}
	defer src.Close(context.WithoutCancel(ctx))
	for i, db := range dbs {
		rep.Progress(replicator.Progress{Phase: "status", CurrentDatabase: db, DatabasesCompleted: i, DatabasesTotal: len(dbs)})
		if err := statusOf(ctx, src, opts.Target.WithDatabase(db), db, rep); err != nil {
			return err
		}
	}
	rep.Progress(replicator.Progress{Phase: "done", DatabasesCompleted: len(dbs), DatabasesTotal: len(dbs)})
	return nil
}

func statusOf(ctx context.Context, src *pgx.Conn, dst pg.URL, db string, rep replicator.Reporter) error {
	d, err := logical.ConnectIfExists(ctx, dst, "target")
	if err != nil {
		return err
	}
	if d != nil {
		defer d.Close(context.WithoutCancel(ctx))
	}
	n, err := logical.ResolveNames(ctx, dst, d, db)
	if err != nil {
		return fmt.Errorf("database %s: %w", db, err)
	}
	st, err := logical.GetStatus(ctx, src, d, db, n)
	if err != nil {
		return fmt.Errorf("database %s: %w", db, err)
	}
	lag := "unknown"
	if st.LagBytes != nil {
		lag = replicator.HumanBytes(*st.LagBytes)
	}
	secs := "unknown"
	if st.LagSeconds != nil {
		secs = fmt.Sprintf("%.1fs", *st.LagSeconds)
	}
	rep.Logf("status %s: subscription %s state %s, enabled %v, lag %s / %s, confirmed LSN %s, tables %d (%d not ready)",
		db, orDash(st.Subscription), orDash(st.State), st.Enabled, lag, secs, orDash(st.ConfirmedLSN), st.Tables, len(st.TablesNotReady))
	return nil
}

func runVerify(ctx context.Context, opts replicator.Options, rep replicator.Reporter) error {
	rep.Progress(replicator.Progress{Phase: "verify"})
	done := 0
	r, err := verifier.Verify(ctx, verifier.Options{
		Source: opts.Source, Target: opts.Target, Rules: opts.Rules, Jobs: max(1, opts.Jobs),
		Logf: rep.Logf,
	}, func(t verifier.TableResult) {
		done++
		rep.Logf("verify %s %s: %s (%d/%d rows)", t.Database, t.Name(), t.Status, t.SourceRows, t.TargetRows)
		rep.Progress(replicator.Progress{Phase: "verify", CurrentDatabase: t.Database, CurrentTable: t.Name(), TablesCompleted: done})
	})
	if err != nil {
		return err
	}
	if !r.Identical() {
		differ := r.Count(verifier.StatusDifferent) + r.Count(verifier.StatusMissing)
		return hint.Wrap(fmt.Errorf("%d of %d tables differ", differ, len(r.Tables)),
			"the job's log lists the differing tables; if sync is running and writes continue, verify again after they stop")
	}
	rep.Logf("verify: %d tables identical", len(r.Tables))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
