package pgschema_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// TestSQLOnServer installs into a fresh schema and has the server parse and
// plan every statement, so a typo fails here rather than in a backend.
func TestSQLOnServer(t *testing.T) {
	t.Parallel()
	schema := pgtest.Schema(t)
	conn := pgtest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := pgschema.NewNames("p_", schema)
	if err != nil {
		t.Fatal(err)
	}
	state := func() pgschema.Installation {
		var s pgschema.Installation
		if err := conn.QueryRow(ctx, n.StateSQL()).Scan(s.ScanDest()...); err != nil {
			t.Fatalf("StateSQL: %v", err)
		}
		return s
	}
	if s := state(); !s.SchemaExists || !s.Empty() {
		t.Fatalf("before install: %+v", s)
	}
	if _, err := conn.Exec(ctx, n.LockSQL()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, n.InstallSQL()); err != nil {
		t.Fatalf("InstallSQL: %v", err)
	}
	if s := state(); !s.Complete() {
		t.Fatalf("after install: %+v", s)
	}
	stmts := map[string]string{
		"FetchStatuses": n.FetchStatusesSQL(),
		"FetchStatus":   n.FetchStatusSQL(),
		"ChangesStart":  n.ChangesStartSQL(),
		"Changes":       n.ChangesSQL(),
		"Notify":        n.NotifySQL(),
		"ListenerPID":   pgschema.ListenerPIDSQL,
		"Diagnose":      n.Diagnose(1).SQL,
		"ClaimUpdate":   n.ClaimUpdate([]int64{1}, [16]byte{}).SQL,
		"DedupeHolders": n.DedupeHolders([]string{"k"}).SQL,
		"HoldersOf":     n.HoldersOf([]int64{1}).SQL,
		"Heartbeat":     n.Heartbeat([]int64{1}).SQL,
		"InspectJob":    n.InspectJob(1).SQL,
		"InspectLog":    n.InspectLog(1, 10).SQL,
	}
	if st, err := n.Enqueue([]queue.NewJob{{Entrypoint: "x"}}); err == nil {
		stmts["Enqueue"] = st.SQL
	} else {
		t.Fatal(err)
	}
	if st, err := n.ClaimSelect(queue.ClaimRequest{Entrypoints: []string{"x"}, Limit: 1}); err == nil {
		stmts["ClaimSelect"] = st.SQL
	} else {
		t.Fatal(err)
	}
	for _, ev := range statemachine.Events() {
		if ev == statemachine.Enqueue {
			continue
		}
		st, err := n.Transition(ev, []int64{1}, "")
		if err != nil {
			t.Fatal(err)
		}
		stmts["Transition "+ev.String()] = st.SQL
	}
	for name, sql := range stmts {
		if _, err := conn.Prepare(ctx, "", sql); err != nil {
			t.Errorf("%s does not parse: %v\n%s", name, err, sql)
		}
	}
	if _, err := conn.Exec(ctx, n.UninstallSQL()); err != nil {
		t.Fatalf("UninstallSQL: %v", err)
	}
	if s := state(); !s.Empty() {
		t.Fatalf("after uninstall: %+v", s)
	}
}
