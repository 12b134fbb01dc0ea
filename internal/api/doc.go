// Package api is the job service's HTTP API: one plain net/http Handler
// that `serve` listens with and the AWS Lambda entry point runs behind API
// Gateway. It owns authentication (x-api-key), rate and concurrency
// limits, request validation (via jobs.DecodeRequest), mapping error kinds
// to status codes, and the JSON shapes of responses. It sees the service's
// pieces only through their interfaces (jobstore.Store, queue.Queue,
// secrets.Keeper, apikeys.Verifier, joblog.Log, telemetry.Metrics) and
// keeps no global state.
//
// The contract, with examples, is docs/api.md; api_test.go checks that
// every route documented there is served.
package api
