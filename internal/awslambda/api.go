package awslambda

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

// API is the coordinator function: the job API that `serve` serves (the
// very handler, internal/api) behind API Gateway. Submissions are sealed
// with KMS, stored in DynamoDB and queued in SQS; a cancel marks the job
// and terminates its worker instance.
type API struct {
	set     *backends.Set
	svc     *service.Service
	handler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)
	cfg     Config
}

// NewAPI opens the backends and builds the handler.
func NewAPI(ctx context.Context, cfg Config) (*API, error) {
	set, err := cfg.open(ctx, backends.PartStore|backends.PartQueue|backends.PartKeeper|backends.PartKeys|
		backends.PartLogs|backends.PartMetrics|backends.PartLauncher)
	if err != nil {
		return nil, err
	}
	countFinished(set) // a cancel ends a job here
	// The service only cancels here; its launcher can stop workers, not
	// launch them (the coordinator has no worker AMI).
	svc, err := service.New(service.Config{
		Store: set.Store, Queue: set.Queue, Launcher: set.Launcher, Logs: set.Logs,
		Logger: cfg.Logger.With("component", "service"), Now: cfg.Now,
		MaxConcurrentJobs: cfg.MaxConcurrentJobs,
	})
	if err != nil {
		set.Close()
		return nil, err
	}
	h := api.New(api.Config{
		Store: set.Store, Queue: set.Queue, Keeper: set.Keeper, Keys: set.Keys, Logs: set.Logs,
		Metrics:           set.Metrics,
		Canceller:         svc,
		MaxConcurrentJobs: cfg.MaxConcurrentJobs,
		// API Gateway throttles (the stage's 1000 req/s); a limiter per
		// Lambda container would limit nothing.
		RateLimit:     -1,
		FollowTimeout: cfg.FollowTimeout,
		RequestKey:    cfg.RequestKey,
		Version:       cfg.Version,
		Now:           cfg.Now,
		Logger:        cfg.Logger.With("component", "api"),
	})
	cached := &healthCache{next: h, ttl: DefaultHealthCacheTTL, now: cfg.Now}
	return &API{set: set, svc: svc, handler: HTTPHandler(cached), cfg: cfg}, nil
}

// Handle serves one API Gateway request (lambda.Start's handler).
func (a *API) Handle(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	defer finish(ctx, a.svc, a.set, a.cfg.Logger)
	return a.handler(ctx, ev)
}

// Close releases the backends.
func (a *API) Close() error { return a.set.Close() }
