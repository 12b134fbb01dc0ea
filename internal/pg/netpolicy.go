package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// EnvAllowNetworks is the environment variable that opens networks to
// job connections (comma-separated CIDRs): `serve --allow-networks` sets
// it for its workers; on AWS a Terraform variable sets it on the worker.
const EnvAllowNetworks = "SEREN_ALLOW_NETWORKS"

// ErrAddressNotAllowed is returned when a job's connection would reach an
// address outside the operator's network policy.
var ErrAddressNotAllowed = errors.New("address is not in a network the service may connect to")

// NetPolicy is the operator's network policy for connections named by
// untrusted input (API jobs). By default every public address is allowed
// and loopback, private, link-local (cloud metadata), CGNAT, unique-local,
// multicast and reserved ranges are denied, in every IPv4 and IPv6 form;
// Allow opens ranges again.
type NetPolicy struct {
	allow []netip.Prefix
}

// ParseNetPolicy parses "CIDR[,CIDR…]" ("" = the default policy). A bare
// address counts as a single-address range.
func ParseNetPolicy(s string) (*NetPolicy, error) {
	p := &NetPolicy{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pr, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("allowed network %q is not a CIDR range (e.g. 10.0.0.0/8)", f)
			}
			pr = netip.PrefixFrom(a, a.BitLen())
		}
		p.allow = append(p.allow, pr.Masked())
	}
	return p, nil
}

// NetPolicyFromEnv reads EnvAllowNetworks.
func NetPolicyFromEnv() (*NetPolicy, error) {
	p, err := ParseNetPolicy(os.Getenv(EnvAllowNetworks))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvAllowNetworks, err)
	}
	return p, nil
}

// String lists the opened ranges.
func (p *NetPolicy) String() string {
	if p == nil || len(p.allow) == 0 {
		return "default (public addresses only)"
	}
	s := make([]string, len(p.allow))
	for i, a := range p.allow {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

var deniedV4 = mustPrefixes(
	"0.0.0.0/8",          // "this network", unspecified
	"10.0.0.0/8",         // private
	"100.64.0.0/10",      // CGNAT
	"127.0.0.0/8",        // loopback
	"169.254.0.0/16",     // link-local, cloud metadata
	"172.16.0.0/12",      // private
	"192.0.0.0/24",       // IETF protocol assignments
	"192.0.2.0/24",       // documentation
	"192.88.99.0/24",     // 6to4 relay anycast
	"192.168.0.0/16",     // private
	"198.18.0.0/15",      // benchmarking
	"198.51.100.0/24",    // documentation
	"203.0.113.0/24",     // documentation
	"224.0.0.0/4",        // multicast
	"240.0.0.0/4",        // reserved, broadcast
	"255.255.255.255/32", // broadcast
)

var deniedV6 = mustPrefixes(
	"::/96",          // unspecified, loopback, IPv4-compatible
	"64:ff9b:1::/48", // local-use NAT64
	"100::/64",       // discard
	"2001::/23",      // IETF protocol assignments, Teredo (embeds an obfuscated IPv4)
	"2001:db8::/32",  // documentation
	"fc00::/7",       // unique-local
	"fe80::/10",      // link-local
	"fec0::/10",      // site-local (deprecated)
	"ff00::/8",       // multicast
)

var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4  = netip.MustParsePrefix("2002::/16")
	mapped4 = netip.MustParsePrefix("::ffff:0:0/96")
	// translated4 is the IPv4-translated form (RFC 2765/6145 SIIT).
	translated4 = netip.MustParsePrefix("::ffff:0:0:0/96")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Allowed reports whether a connection to a may be made.
func (p *NetPolicy) Allowed(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	forms := []netip.Addr{a}
	if v4, ok := embeddedV4(a); ok {
		forms = append(forms, v4)
	}
	if p != nil {
		for _, pr := range p.allow {
			for _, f := range forms {
				if pr.Contains(f) {
					return true
				}
			}
		}
	}
	for _, f := range forms {
		if denied(f) {
			return false
		}
	}
	return true
}

// embeddedV4 returns the IPv4 address an IPv6 address stands for:
// IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64 or 6to4.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	if a.Is4() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case mapped4.Contains(a), a.Is4In6():
		return a.Unmap(), true
	case nat64.Contains(a), translated4.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixTo4.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case netip.MustParsePrefix("::/96").Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

func denied(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return true
	}
	list := deniedV6
	if a.Is4() {
		list = deniedV4
	}
	for _, pr := range list {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// checkAddr parses an address literal and applies the policy.
func (p *NetPolicy) checkAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address: %w", s, ErrAddressNotAllowed)
	}
	if !p.Allowed(a) {
		return netip.Addr{}, ErrAddressNotAllowed
	}
	return a, nil
}

// Resolve returns the allowed addresses of host (a name or a literal).
// A name with no allowed address is refused.
func (p *NetPolicy) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if !p.Allowed(a) {
			return nil, ErrAddressNotAllowed
		}
		return []netip.Addr{a}, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	var ok []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if p.Allowed(a) {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, ErrAddressNotAllowed
	}
	return ok, nil
}

// lookup is a pgconn LookupFunc: DNS is asked once, and only allowed
// addresses go on to be dialled.
func (p *NetPolicy) lookup(ctx context.Context, host string) ([]string, error) {
	addrs, err := p.Resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out, nil
}

// dial is a pgconn DialFunc that connects only to an allowed IP literal
// over TCP: no unix sockets, no names (which could resolve anew).
func (p *NetPolicy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("%s connections: %w", network, ErrAddressNotAllowed)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial address: %w", ErrAddressNotAllowed)
	}
	if _, err := p.checkAddr(host); err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
