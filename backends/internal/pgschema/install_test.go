package pgschema_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// TestUpgradePlan pins what Upgrade decides from what it found, without a
// database (the upgrade tests run it against real installations).
func TestUpgradePlan(t *testing.T) {
	t.Parallel()
	n, err := pgschema.NewNames("p_", "s")
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{}
	for _, ix := range n.Indexes() {
		all[ix.Name] = `s."` + ix.Name + `"`
	}
	legacyBody := "\nBEGIN\n PERFORM pg_notify(\n 'p_ch_pgqueuer',\n json_build_object(\n 'channel', 'p_ch_pgqueuer',\n" +
		" 'operation', lower(TG_OP),\n 'sent_at', NOW(),\n 'table', TG_TABLE_NAME,\n 'type', 'table_changed_event'\n )::text\n );\n RETURN NULL;\nEND;\n"
	whats := func(cs []pgschema.Change) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.What)
		}
		return out
	}
	t.Run("PgQueuer's install", func(t *testing.T) {
		if cs := n.Upgrade(pgschema.Existing{Indexes: all, FunctionSource: "BEGIN RETURN NULL; END;"}); len(cs) != 0 {
			t.Errorf("changes %q; want none", whats(cs))
		}
	})
	t.Run("an earlier jobwatch's function, whitespace aside", func(t *testing.T) {
		cs := n.Upgrade(pgschema.Existing{Indexes: all, FunctionSource: strings.ReplaceAll(legacyBody, "\n ", "\n\t  ")})
		if len(cs) != 1 || !strings.HasPrefix(cs[0].SQL, `CREATE OR REPLACE FUNCTION "s"."p_fn_pgqueuer_changed"()`) {
			t.Fatalf("changes %+v; want the function replaced", cs)
		}
	})
	t.Run("a channel other than this installation's", func(t *testing.T) {
		other := strings.ReplaceAll(legacyBody, "p_ch_pgqueuer", "q_ch_pgqueuer")
		if cs := n.Upgrade(pgschema.Existing{Indexes: all, FunctionSource: other}); len(cs) != 0 {
			t.Errorf("changes %q; want none (not this installation's function)", whats(cs))
		}
	})
	t.Run("no index at all", func(t *testing.T) {
		cs := n.Upgrade(pgschema.Existing{})
		var want []string
		for _, ix := range n.Indexes() {
			want = append(want, "created index "+ix.Name)
		}
		if got := whats(cs); !slices.Equal(got, want) {
			t.Errorf("changes %q, want %q", got, want)
		}
	})
}
