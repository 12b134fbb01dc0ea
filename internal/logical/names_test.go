package logical

import (
	"regexp"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	long := strings.Repeat("x", 200)
	cases := []struct {
		db     string
		prefix string
	}{
		{"sales", "seren_sales_"},
		{"Sales", "seren_sales_"},
		{"sales!", "seren_sales__"},
		{"my db", "seren_my_db_"},
		{"ünïcode", "seren_"},
		{`we"ird'name;drop`, "seren_we_ird_name_drop_"},
		{long, "seren_" + strings.Repeat("x", 39) + "_"},
		{"", "seren__"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		n := PairNames(c.db, "7301234567890123456")
		for _, s := range []string{n.Publication, n.Slot, n.Subscription} {
			if !valid.MatchString(s) {
				t.Errorf("PairNames(%q) = %q: not a valid slot name", c.db, s)
			}
		}
		if !strings.HasPrefix(n.Slot, c.prefix) {
			t.Errorf("PairNames(%q).Slot = %q, want prefix %q", c.db, n.Slot, c.prefix)
		}
		if n != PairNames(c.db, "7301234567890123456") {
			t.Errorf("PairNames(%q) is not deterministic", c.db)
		}
		if other, ok := seen[n.Slot]; ok {
			t.Errorf("PairNames(%q) and PairNames(%q) collide: %q", c.db, other, n.Slot)
		}
		seen[n.Slot] = c.db
		if !IsOurs(n.Slot) {
			t.Errorf("IsOurs(%q) = false", n.Slot)
		}
	}
	if IsOurs("my_slot") || IsOurs("seren_x") {
		t.Error("IsOurs accepts a foreign name")
	}
	// Two targets of one source database get disjoint sets; the names
	// made before pair naming are still recognised as ours.
	a, b := PairNames("sales", "7301234567890123456"), PairNames("sales", "7309999999999999999")
	if a.Slot == b.Slot || a.Publication == b.Publication {
		t.Errorf("two targets share a set: %q", a.Slot)
	}
	if old := legacyNames("sales"); old.Slot == a.Slot || !IsOurs(old.Slot) {
		t.Errorf("legacy name %q: equal to a pair name or not ours", old.Slot)
	}
}

func TestConnInfo(t *testing.T) {
	src := mustURL(t, "postgres://app:s3cr%27t@db.example.com:6543/shop?sslmode=require&application_name=x&pool_max_conns=4")
	cases := []struct {
		name string
		opts SubOptions
		want string
	}{
		{"inline", SubOptions{}, `host='db.example.com' port='6543' dbname='shop' user='app' password='s3cr\'t' sslmode='require'`},
		{"passfile", SubOptions{PasswordMode: PasswordPassfile, Passfile: "/var/lib/postgresql/.seren_pgpass"},
			`host='db.example.com' port='6543' dbname='shop' user='app' passfile='/var/lib/postgresql/.seren_pgpass' sslmode='require'`},
		{"dedicated role and host", SubOptions{User: "repl", Password: "rotate-me", Host: "10.0.0.5"},
			`host='10.0.0.5' dbname='shop' user='repl' password='rotate-me' sslmode='require'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ConnInfo(src, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("ConnInfo = %s\nwant        %s", got, c.want)
			}
			back := parseConnInfo(got)
			if back["host"] == "" || back["dbname"] != "shop" {
				t.Errorf("parseConnInfo(%s) = %v", got, back)
			}
		})
	}
	if _, err := ConnInfo(src, SubOptions{PasswordMode: "plaintext"}); err == nil {
		t.Error("unknown password mode accepted")
	}
	if got := parseConnInfo(`password='s3cr\'t' host=h`); got["password"] != "s3cr't" || got["host"] != "h" {
		t.Errorf("parseConnInfo quoting: %v", got)
	}
}

func TestServerMajor(t *testing.T) {
	for in, want := range map[string]int{"15.4 (Debian 15.4-1)": 15, "9.6.2": 9, "17devel": 17, "": 0} {
		if got := serverMajor(in); got != want {
			t.Errorf("serverMajor(%q) = %d, want %d", in, got, want)
		}
	}
}
