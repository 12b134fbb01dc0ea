package schema

import "testing"

func TestTOCKey(t *testing.T) {
	for line, want := range map[string]string{
		"3217; 2606 16391 CONSTRAINT public b_players b_players_pkey postgres":   "c:public:b_players:b_players_pkey",
		"3218; 2606 16392 FK CONSTRAINT public players players_team_fk postgres": "c:public:players:players_team_fk",
		"3219; 2620 16393 TRIGGER public players players_touch postgres":         "t:public:players:players_touch",
		"3220; 1259 16394 INDEX public players_team postgres":                    "i:public::players_team",
	} {
		e, _, _, ok := parseTOC(line)
		if !ok || e.key() != want {
			t.Errorf("parseTOC(%q).key() = %q, want %q", line, e.key(), want)
		}
	}
}
