// Package jobclient is what the commands that talk to the job service
// share (jobs, and init with a remote API): the client from flags and
// environment, following a job's progress, and the errors of its outcome.
package jobclient

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// Environment variables of the client.
const (
	EnvRemoteAPI = "SEREN_REMOTE_API"
	EnvAPIKey    = "SEREN_API_KEY"
)

// NewClient returns a client for remoteAPI and apiKey, falling back to
// SEREN_REMOTE_API and SEREN_API_KEY.
//
// insecureHTTP (--insecure-http, or SEREN_INSECURE_HTTP) allows plain
// http:// to a host that is not loopback; without it the client refuses
// to send anything there.
func NewClient(remoteAPI, apiKey string, insecureHTTP bool) (*apiclient.Client, error) {
	if remoteAPI == "" {
		remoteAPI = os.Getenv(EnvRemoteAPI)
	}
	if apiKey == "" {
		apiKey = os.Getenv(EnvAPIKey)
	}
	if remoteAPI == "" {
		return nil, clio.Usage(hint.Wrap(errors.New("no job service configured"),
			"pass --remote-api URL or set "+EnvRemoteAPI+" (e.g. http://127.0.0.1:8080 for a local serve)"))
	}
	if !strings.HasPrefix(remoteAPI, "http://") && !strings.HasPrefix(remoteAPI, "https://") {
		return nil, clio.Usage(fmt.Errorf("--remote-api %q: want http(s)://host[:port]", remoteAPI))
	}
	if apiKey == "" {
		return nil, clio.Usage(hint.Wrap(errors.New("no API key"),
			"set "+EnvAPIKey+" to a key from `keys create` (or pass --api-key)"))
	}
	return &apiclient.Client{BaseURL: remoteAPI, APIKey: apiKey, InsecureHTTP: cmdutil.InsecureHTTP(insecureHTTP)}, nil
}

// OutcomeError describes a job that ended other than completed.
func OutcomeError(v api.JobView) error {
	msg := fmt.Sprintf("job %s ended as %s", v.JobID, v.Status)
	if v.Error != "" {
		msg += ": " + v.Error
	}
	return hint.Wrap(errors.New(msg), "read its log with: postgres-seren-replicator jobs logs "+v.JobID)
}

// Detached is the error of a follow stopped by Ctrl-C: the job keeps
// running on the service.
func Detached(id string) error {
	return &clio.ExitError{Code: clio.ExitCanceled, Err: hint.Wrap(
		fmt.Errorf("stopped following job %s; it keeps running on the service", id),
		"follow it again with: postgres-seren-replicator jobs show "+id+" --follow")}
}
