package clio

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// ParseDuration is the one duration syntax of every timeout and interval
// flag: a Go duration (90s, 5m, 1h30m) or plain seconds (90, 1.5).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%q: must not be negative", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90s, 5m or 1h30m (or plain seconds)", s)
	}
	return d, nil
}

type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}
func (v durationValue) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}
func (v durationValue) Type() string { return "duration" }

// DurationVar registers a duration flag that takes ParseDuration's syntax.
func DurationVar(fl *pflag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fl.Var(durationValue{p}, name, usage)
}

type secondsValue struct{ s *int64 }

func (v secondsValue) String() string {
	if v.s == nil {
		return ""
	}
	return (time.Duration(*v.s) * time.Second).String()
}
func (v secondsValue) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*v.s = int64(d.Round(time.Second) / time.Second)
	return nil
}
func (v secondsValue) Type() string { return "duration" }

// SecondsVar is DurationVar for a value kept in whole seconds.
func SecondsVar(fl *pflag.FlagSet, p *int64, name string, def int64, usage string) {
	*p = def
	fl.Var(secondsValue{p}, name, usage)
}
