package selection

import (
	"reflect"
	"testing"
)

// FuzzBuild checks that no input panics and that accepted rules survive
// the round trip through flag form.
func FuzzBuild(f *testing.F) {
	f.Add("app.users", "app.orders:status <> 'x'", "app.events:created_at:6 months")
	f.Add(`"my.db"."t:1"`, `*.s.t:"a:b" = $$)$$`, `t:"c""d":90d`)
	f.Add("a..b", "t:", "t:c:5m")
	f.Fuzz(func(t *testing.T, table, tableFilter, timeFilter string) {
		r, err := Build(Flags{IncludeTables: []string{table}, TableFilters: []string{tableFilter}, TimeFilters: []string{timeFilter}})
		if err != nil {
			return
		}
		r.Summary()
		r.Table("app", "public", "users")
		back, err := Build(r.Flags())
		if err != nil {
			t.Fatalf("Build(%+v) from Flags(): %v", r.Flags(), err)
		}
		if !reflect.DeepEqual(back.Flags(), r.Flags()) {
			t.Fatalf("flags not stable: %+v vs %+v", r.Flags(), back.Flags())
		}
	})
}
