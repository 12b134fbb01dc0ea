package cmdutil

import (
	"os"
	"strconv"

	"github.com/spf13/pflag"
)

// EnvInsecureHTTP set to a true value (1, true) is --insecure-http.
const EnvInsecureHTTP = "SEREN_INSECURE_HTTP"

// AddInsecureHTTPFlag adds --insecure-http to fs, for every command that
// talks to the job service.
func AddInsecureHTTPFlag(fs *pflag.FlagSet, p *bool) {
	fs.BoolVar(p, "insecure-http", false,
		"allow a plain http:// job service on a host other than this machine: the API key and database URLs travel in clear (env "+EnvInsecureHTTP+"=1)")
}

// InsecureHTTP is the flag's value, or else the environment's.
func InsecureHTTP(flag bool) bool {
	if flag {
		return true
	}
	v, err := strconv.ParseBool(os.Getenv(EnvInsecureHTTP))
	return err == nil && v
}
