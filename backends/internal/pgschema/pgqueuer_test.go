package pgschema_test

import (
	"testing"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// TestInstallMatchesPgQueuer installs with each backend, for default
// names, a prefix and a schema, and compares pg_dump --schema-only of the
// result with PgQueuer's own install (testdata/pgqueuer-*.sql, recorded by
// scripts/pgqueuer-reference): the same enum, tables, sequences,
// constraints, every index with its name and definition, the function's
// signature and the trigger. The function's body is PgQueuer's code, not
// stored; its behaviour is compared instead: the trigger probe sends, step
// by step, exactly the notifications PgQueuer's sent (none for an UPDATE).
func TestInstallMatchesPgQueuer(t *testing.T) {
	t.Parallel()
	forEach(t, variants, func(t *testing.T, kind string, v variant, schema string) {
		b := openBackend(t, kind, v, schema)
		if res, err := b.Install(pgtest.Context(t)); err != nil || !res.Created || len(res.Changes) > 0 {
			t.Fatalf("Install = %+v, %v; want created", res, err)
		}
		wantSchema(t, v, schema, "fresh install")
		wantTrigger(t, v, schema)
	})
}

// TestInstallOverPgQueuerChangesNothing: where PgQueuer installed (its
// reference dump loaded, its function body stood in for by one jobwatch
// never wrote), Install finds a complete installation and changes nothing:
// not an index, not the function. So does a second Install.
func TestInstallOverPgQueuerChangesNothing(t *testing.T) {
	t.Parallel()
	forEach(t, variants, func(t *testing.T, kind string, v variant, schema string) {
		loadReference(t, v, schema)
		before := installed(t, schema)
		b := openBackend(t, kind, v, schema)
		ctx := pgtest.Context(t)
		for range 2 {
			if res, err := b.Install(ctx); err != nil || res.Created || len(res.Changes) > 0 {
				t.Fatalf("Install over PgQueuer's install = %+v, %v; want nothing done", res, err)
			}
		}
		if after := installed(t, schema); after != before {
			t.Errorf("Install changed PgQueuer's install; - before, + after:\n%s", diffLines(before, after))
		}
		if ok, err := b.Installed(ctx); !ok || err != nil {
			t.Errorf("Installed = %v, %v", ok, err)
		}
	})
}
