package api_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
)

// observed collects, over the whole test run, which status codes each
// route answered (from the access log; route "" is an unrouted request).
var observed = struct {
	sync.Mutex
	m map[string]map[int]bool
}{m: map[string]map[int]bool{}}

func recordObserved(t *testing.T, logs string) {
	observed.Lock()
	defer observed.Unlock()
	for _, line := range strings.Split(logs, "\n") {
		var m struct {
			Msg    string `json:"msg"`
			Route  string `json:"route"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.Msg != "http request" {
			continue
		}
		if observed.m[m.Route] == nil {
			observed.m[m.Route] = map[int]bool{}
		}
		observed.m[m.Route][m.Status] = true
	}
}

// apiDoc is what docs/api.md promises.
type apiDoc struct {
	routes []string         // "POST /jobs", in document order
	codes  map[string][]int // per route
	common []int            // for every /jobs route
}

var (
	routeHeading = regexp.MustCompile("^### (GET|POST|PUT|DELETE|PATCH) (/\\S*)$")
	statusRow    = regexp.MustCompile("^\\| ([1-5][0-9][0-9]) \\|")
)

func parseAPIDoc() (apiDoc, error) {
	data, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		return apiDoc{}, err
	}
	d := apiDoc{codes: map[string][]int{}}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			section = ""
			if m := routeHeading.FindStringSubmatch(line); m != nil {
				section = m[1] + " " + m[2]
				d.routes = append(d.routes, section)
			} else if line == "### Common responses" {
				section = "common"
			}
			continue
		}
		m := statusRow.FindStringSubmatch(line)
		if m == nil || section == "" {
			continue
		}
		code, _ := strconv.Atoi(m[1])
		if section == "common" {
			d.common = append(d.common, code)
		} else {
			d.codes[section] = append(d.codes[section], code)
		}
	}
	return d, nil
}

// Every documented route is served and every served route is documented.
func TestDocumentedRoutesAreServed(t *testing.T) {
	d, err := parseAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	doc, served := append([]string(nil), d.routes...), api.Routes()
	sort.Strings(doc)
	sort.Strings(served)
	if fmt.Sprint(doc) != fmt.Sprint(served) {
		t.Fatalf("docs/api.md routes %v\nhandler routes   %v", doc, served)
	}
	if len(d.common) == 0 {
		t.Fatal("docs/api.md has no common responses table")
	}
	for _, r := range d.routes {
		if len(d.codes[r]) == 0 {
			t.Errorf("docs/api.md: %s has no status table", r)
		}
	}
}

// checkObservedCodes runs after the whole suite: every documented status
// code was produced by some test, and no test saw an undocumented one.
func checkObservedCodes() error {
	d, err := parseAPIDoc()
	if err != nil {
		return err
	}
	observed.Lock()
	defer observed.Unlock()
	var problems []string
	isJobRoute := func(r string) bool { return strings.Contains(r, " /jobs") }
	documented := func(route string, code int) bool {
		if route == "" {
			return code == 404 || code == 405
		}
		for _, c := range d.codes[route] {
			if c == code {
				return true
			}
		}
		if isJobRoute(route) {
			for _, c := range d.common {
				if c == code {
					return true
				}
			}
		}
		return false
	}
	for route, codes := range observed.m {
		for code := range codes {
			if !documented(route, code) {
				problems = append(problems, fmt.Sprintf("%q answered %d, which docs/api.md does not list", route, code))
			}
		}
	}
	for _, route := range d.routes {
		for _, code := range d.codes[route] {
			if !observed.m[route][code] {
				problems = append(problems, fmt.Sprintf("docs/api.md lists %d for %s but no test produced it", code, route))
			}
		}
	}
	for _, code := range d.common {
		seen := false
		for route, codes := range observed.m {
			seen = seen || (isJobRoute(route) && codes[code])
		}
		if !seen {
			problems = append(problems, fmt.Sprintf("docs/api.md lists %d for every job route but no test produced it", code))
		}
	}
	for _, code := range []int{404, 405} {
		if !observed.m[""][code] {
			problems = append(problems, fmt.Sprintf("no test produced %d for an unrouted request", code))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("docs/api.md and the handler disagree:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	// Only a full run sees every route; a -run subset cannot be judged.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		if err := checkObservedCodes(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.Exit(code)
}
