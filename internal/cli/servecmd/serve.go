// Package servecmd implements `serve`: the job service on one machine. It
// opens the embedded backends under --data-dir (one SQLite file, a master
// key file created with 0600 permissions on first start), serves the HTTP
// API, and runs the provisioner, checker and sweeper that start one local
// `worker` process per job, up to --max-concurrent-jobs at once.
package servecmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/netutil"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/buildinfo"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

// Defaults of the HTTP server fences.
const (
	DefaultReadTimeout       = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultWriteTimeout      = time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConnections    = 512
)

// Options are the parsed flags of `serve`.
type Options struct {
	IO                *iostreams.IOStreams
	DataDir           string
	Listen            string
	MaxConcurrentJobs int
	MaxQueuedJobs     int
	JobTimeoutDefault time.Duration
	WorkerBinary      string
	RateLimit         float64
	KeyRateLimit      float64
	LogLevel          string
	AllowNetworks     string

	// HTTP server fences.
	ReadTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	WriteTimeout      time.Duration
	MaxConnections    int
	TLSCert, TLSKey   string

	// Tuning, mostly for tests (hidden flags).
	HeartbeatTimeout time.Duration
	CheckInterval    time.Duration
	Visibility       time.Duration
	WorkerGrace      time.Duration
	WorkerHeartbeat  time.Duration
	ShutdownTimeout  time.Duration

	// Ready, when set, is called with the API's base URL once it listens.
	Ready func(url string)
}

// New returns the serve command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the job service: HTTP API, job queue and local workers",
		Long: `serve runs the job service on this machine with the embedded backends: one
SQLite file and a master key file (created with 0600 permissions on first
start) under --data-dir. It serves the HTTP API (docs/api.md), queues submitted
jobs and starts one worker process per job, at most --max-concurrent-jobs at
once. A submission beyond the limit waits in the queue if --max-queued-jobs
allows, otherwise it is answered 429 with Retry-After.

Create an API key first (the job routes need one):
  postgres-seren-replicator keys create --data-dir DIR --name me

Workers run in their own process group. On SIGINT/SIGTERM serve stops them and
re-queues their jobs; they resume from their checkpoints when serve runs again.
If serve itself dies (kill -9), its workers keep running and the next serve
adopts them. The listen URL is printed on stdout; logs go to stderr.`,
		Example: `  postgres-seren-replicator serve --data-dir /var/lib/seren --listen 127.0.0.1:8080
  SEREN_REMOTE_API=http://127.0.0.1:8080 SEREN_API_KEY=sk_live_… postgres-seren-replicator init --source "$SRC" --target "$DST"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", "", "directory for the database, master key and worker output (default $"+backends.EnvDataDir+" or "+backends.DefaultDataDir()+")")
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:8080", "address the HTTP API listens on (port 0: any free port)")
	f.IntVar(&opts.MaxConcurrentJobs, "max-concurrent-jobs", service.DefaultMaxConcurrentJobs, "workers running at once")
	f.IntVar(&opts.MaxQueuedJobs, "max-queued-jobs", 0, "jobs accepted beyond --max-concurrent-jobs that wait in the queue (0: submit answers 429 instead)")
	clio.DurationVar(f, &opts.JobTimeoutDefault, "job-timeout-default", jobs.DefaultJobTimeout, "timeout of jobs submitted without options.job_timeout")
	f.StringVar(&opts.WorkerBinary, "worker-binary", "", "executable started as the worker of each job (default: this program)")
	f.Float64Var(&opts.RateLimit, "rate-limit", api.DefaultRateLimit, "API requests per second over all clients (negative: no limit)")
	f.Float64Var(&opts.KeyRateLimit, "key-rate-limit", api.DefaultKeyRateLimit, "API requests per second per API key (negative: no per-key limit)")
	clio.DurationVar(f, &opts.ReadTimeout, "read-timeout", DefaultReadTimeout, "longest a client may take to send a request, body included")
	clio.DurationVar(f, &opts.ReadHeaderTimeout, "read-header-timeout", DefaultReadHeaderTimeout, "longest a client may take to send a request's headers")
	clio.DurationVar(f, &opts.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "how long an idle keep-alive connection is kept")
	clio.DurationVar(f, &opts.WriteTimeout, "write-timeout", DefaultWriteTimeout, "longest writing one response may take (a followed log extends it per write)")
	f.IntVar(&opts.MaxHeaderBytes, "max-header-bytes", DefaultMaxHeaderBytes, "largest request header block accepted")
	f.IntVar(&opts.MaxConnections, "max-connections", DefaultMaxConnections, "client connections served at once; more wait to be accepted")
	f.StringVar(&opts.TLSCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file; needs --tls-key")
	f.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key file of --tls-cert")
	f.StringVar(&opts.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&opts.AllowNetworks, "allow-networks", os.Getenv(pg.EnvAllowNetworks), "CIDR[,CIDR…] that jobs may connect to besides public addresses; loopback, private, link-local, CGNAT and unique-local ranges are refused unless listed here (env "+pg.EnvAllowNetworks+")")
	clio.DurationVar(f, &opts.HeartbeatTimeout, "heartbeat-timeout", service.DefaultHeartbeatTimeout, "a running job whose worker has not heartbeated this long is re-queued")
	clio.DurationVar(f, &opts.CheckInterval, "check-interval", service.DefaultCheckInterval, "how often jobs are checked for lost workers and timeouts")
	clio.DurationVar(f, &opts.Visibility, "queue-visibility", 30*time.Second, "lease of a received queue message (a local launch takes milliseconds)")
	clio.DurationVar(f, &opts.WorkerGrace, "worker-grace", 10*time.Second, "SIGTERM → SIGKILL wait when stopping a worker")
	clio.DurationVar(f, &opts.WorkerHeartbeat, "worker-heartbeat", 5*time.Second, "workers' heartbeat interval")
	clio.DurationVar(f, &opts.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful stop may take")
	for _, h := range []string{"read-header-timeout", "idle-timeout", "write-timeout", "max-header-bytes", "heartbeat-timeout", "check-interval", "queue-visibility", "worker-grace", "worker-heartbeat", "shutdown-timeout"} {
		_ = f.MarkHidden(h)
	}
	return cmd
}

func run(ctx context.Context, opts *Options) error {
	if opts.MaxConcurrentJobs < 1 {
		return clio.Usage(fmt.Errorf("--max-concurrent-jobs %d: must be at least 1", opts.MaxConcurrentJobs))
	}
	if opts.MaxQueuedJobs < 0 {
		return clio.Usage(fmt.Errorf("--max-queued-jobs %d: must not be negative", opts.MaxQueuedJobs))
	}
	if opts.JobTimeoutDefault < time.Minute {
		return clio.Usage(fmt.Errorf("--job-timeout-default %s: must be at least 1m", opts.JobTimeoutDefault))
	}
	// Zero is the default (for callers that build Options themselves).
	for _, d := range []struct {
		v    *time.Duration
		def  time.Duration
		flag string
	}{
		{&opts.ReadTimeout, DefaultReadTimeout, "--read-timeout"},
		{&opts.ReadHeaderTimeout, DefaultReadHeaderTimeout, "--read-header-timeout"},
		{&opts.WriteTimeout, DefaultWriteTimeout, "--write-timeout"},
		{&opts.IdleTimeout, DefaultIdleTimeout, "--idle-timeout"},
	} {
		if *d.v < 0 {
			return clio.Usage(fmt.Errorf("%s %s: must be positive", d.flag, *d.v))
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if opts.MaxHeaderBytes == 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.MaxHeaderBytes < 4096 {
		return clio.Usage(fmt.Errorf("--max-header-bytes %d: must be at least 4096", opts.MaxHeaderBytes))
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.MaxConnections < 1 {
		return clio.Usage(fmt.Errorf("--max-connections %d: must be at least 1", opts.MaxConnections))
	}
	tlsConfig, err := loadTLS(opts.TLSCert, opts.TLSKey)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.LogLevel)); err != nil {
		return clio.Usage(fmt.Errorf("--log-level %q: use debug, info, warn or error", opts.LogLevel))
	}
	log := slog.New(slog.NewTextHandler(opts.IO.ErrOut, &slog.HandlerOptions{Level: level}))
	networks, err := pg.ParseNetPolicy(opts.AllowNetworks)
	if err != nil {
		return clio.Usage(fmt.Errorf("--allow-networks: %w", err))
	}
	// The API's submit check and every worker (started with this
	// environment) read the policy from the environment.
	if err := os.Setenv(pg.EnvAllowNetworks, opts.AllowNetworks); err != nil {
		return fmt.Errorf("set %s: %w", pg.EnvAllowNetworks, err)
	}
	log.Info("job connections", "allowed_networks", networks.String())

	cfg := backends.FromEnv(backends.Config{
		Backend:      backends.Embedded,
		DataDir:      opts.DataDir,
		WorkerBinary: opts.WorkerBinary,
		WorkerArgs: []string{"--default-timeout", opts.JobTimeoutDefault.String(),
			"--heartbeat-every", opts.WorkerHeartbeat.String()},
		WorkerGrace: opts.WorkerGrace,
		Logger:      log.With("component", "launcher"),
	})
	if opts.WorkerBinary != "" {
		if _, err := os.Stat(opts.WorkerBinary); err != nil {
			return clio.Usage(fmt.Errorf("--worker-binary: %w", err))
		}
	}
	release, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer release()
	set, err := backends.Open(ctx, cfg, backends.ForServe)
	if err != nil {
		return err
	}
	defer set.Close()

	svc, err := service.New(service.Config{
		Store: set.Store, Queue: set.Queue, Launcher: set.Launcher, Metrics: set.Metrics, Logs: set.Logs,
		Logger:            log.With("component", "service"),
		MaxConcurrentJobs: opts.MaxConcurrentJobs,
		DefaultJobTimeout: opts.JobTimeoutDefault,
		HeartbeatTimeout:  opts.HeartbeatTimeout,
		CheckInterval:     opts.CheckInterval,
		Visibility:        opts.Visibility,
		AfterSweep: func(ctx context.Context, before time.Time) error {
			_, err := set.WorkerLogs.PurgeLogs(before)
			return err
		},
	})
	if err != nil {
		return err
	}
	requestKey, err := loadRequestKey(filepath.Join(set.DataDir, RequestKeyFile))
	if err != nil {
		return err
	}
	handler := api.New(api.Config{
		Store: set.Store, Queue: set.Queue, Keeper: set.Keeper, Keys: set.Keys, Logs: set.Logs,
		Metrics:           set.Metrics,
		Canceller:         svc,
		MaxConcurrentJobs: opts.MaxConcurrentJobs + opts.MaxQueuedJobs,
		RateLimit:         opts.RateLimit,
		KeyRateLimit:      opts.KeyRateLimit,
		RequestKey:        requestKey,
		Version:           buildinfo.Get().Version,
		Logger:            log.With("component", "api"),
	})

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return hint.Wrap(fmt.Errorf("listen on %s: %w", opts.Listen, err),
			"choose another --listen address (port 0 picks a free one)")
	}
	url := "http://" + ln.Addr().String()
	if tlsConfig != nil {
		url = "https://" + ln.Addr().String()
	}
	// At most MaxConnections connections are served at once; more wait in
	// the listen backlog. The read timeouts free connections that send
	// slowly or nothing at all.
	ln = netutil.LimitListener(ln, opts.MaxConnections)
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       opts.ReadTimeout,
		// Responses are small; a followed log extends the deadline per
		// write (api: logs.go), so it may last as long as the job.
		WriteTimeout:   opts.WriteTimeout,
		IdleTimeout:    opts.IdleTimeout,
		MaxHeaderBytes: opts.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	svcCtx, stopSvc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSvc()
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(svcCtx) }()
	srvDone := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			srvDone <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
			return
		}
		srvDone <- srv.Serve(ln)
	}()

	log.Info("serving", "url", url, "data_dir", set.DataDir, "max_concurrent_jobs", opts.MaxConcurrentJobs,
		"max_queued_jobs", opts.MaxQueuedJobs, "max_connections", opts.MaxConnections, "tls", tlsConfig != nil, "version", buildinfo.Get().Version)
	fmt.Fprintln(opts.IO.Out, url)
	if opts.Ready != nil {
		opts.Ready(url)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-srvDone:
		log.Error("HTTP server stopped", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	hctx, hcancel := context.WithTimeout(sctx, 5*time.Second)
	if err := srv.Shutdown(hctx); err != nil {
		srv.Close() // followed log streams do not end by themselves
	}
	hcancel()
	stopSvc()
	<-svcDone
	if err := svc.Shutdown(sctx); err != nil {
		log.Error("stop workers", "err", err)
	}
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("HTTP server: %w", serveErr)
	}
	return nil
}
