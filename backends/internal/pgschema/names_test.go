package pgschema_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestNamesDefault(t *testing.T) {
	t.Parallel()
	n, err := pgschema.NewNames("", "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"StatusType": "pgqueuer_status", "Queue": "pgqueuer", "Log": "pgqueuer_log",
		"Statistics": "pgqueuer_statistics", "Schedules": "pgqueuer_schedules",
		"Function": "fn_pgqueuer_changed", "Trigger": "tg_pgqueuer_changed", "Channel": "ch_pgqueuer",
		"IdxDedupe": "pgqueuer_unique_dedupe_key", "IdxLogJob": "pgqueuer_log_job_id_status",
		"IdxLogCreated": "pgqueuer_log_created", "IdxStatsUnique": "pgqueuer_statistics_unique_count",
		"IdxPriorityID": "pgqueuer_priority_id_id1_idx", "IdxUpdatedID": "pgqueuer_updated_id_id1_idx",
		"IdxQueueManager": "pgqueuer_queue_manager_id_idx", "IdxDequeuePriority": "pgqueuer_ep_prio_id_idx",
		"IdxDequeueAfter": "pgqueuer_ep_ea_idx", "IdxLogNotAggregated": "pgqueuer_log_not_aggregated",
		"IdxLogStatus": "pgqueuer_log_status",
	}
	got := map[string]string{
		"StatusType": n.StatusType, "Queue": n.Queue, "Log": n.Log, "Statistics": n.Statistics,
		"Schedules": n.Schedules, "Function": n.Function, "Trigger": n.Trigger, "Channel": n.Channel,
		"IdxDedupe": n.IdxDedupe, "IdxLogJob": n.IdxLogJob, "IdxLogCreated": n.IdxLogCreated,
		"IdxStatsUnique": n.IdxStatsUnique, "IdxPriorityID": n.IdxPriorityID, "IdxUpdatedID": n.IdxUpdatedID,
		"IdxQueueManager": n.IdxQueueManager, "IdxDequeuePriority": n.IdxDequeuePriority,
		"IdxDequeueAfter": n.IdxDequeueAfter, "IdxLogNotAggregated": n.IdxLogNotAggregated,
		"IdxLogStatus": n.IdxLogStatus,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if q := n.QueueTable(); q != `"pgqueuer"` {
		t.Errorf("QueueTable() = %s", q)
	}
	if l := n.ListenSQL(); l != `LISTEN "ch_pgqueuer"` {
		t.Errorf("ListenSQL() = %s", l)
	}
	if s := n.NotifySQL(); s != `SELECT pg_notify('ch_pgqueuer', $1::text)` {
		t.Errorf("NotifySQL() = %s", s)
	}
}

func TestNamesPrefixAndSchema(t *testing.T) {
	t.Parallel()
	n, err := pgschema.NewNames("App_", "Jobs-1")
	if err != nil {
		t.Fatal(err)
	}
	if n.Queue != "App_pgqueuer" || n.Channel != "App_ch_pgqueuer" || n.Trigger != "App_tg_pgqueuer_changed" ||
		n.IdxDedupe != "App_pgqueuer_unique_dedupe_key" {
		t.Errorf("prefix not applied to every name: %+v", n)
	}
	if q := n.QueueTable(); q != `"Jobs-1"."App_pgqueuer"` {
		t.Errorf("QueueTable() = %s", q)
	}
	if q := n.LogTable(); q != `"Jobs-1"."App_pgqueuer_log"` {
		t.Errorf("LogTable() = %s", q)
	}
	// The channel is not schema-qualified: it is database-wide.
	if l := n.ListenSQL(); l != `LISTEN "App_ch_pgqueuer"` {
		t.Errorf("ListenSQL() = %s", l)
	}
	install := n.InstallSQL()
	for _, want := range []string{
		`CREATE TYPE "Jobs-1"."App_pgqueuer_status"`,
		`CREATE TABLE "Jobs-1"."App_pgqueuer" (`,
		`CREATE TABLE "Jobs-1"."App_pgqueuer_log" (`,
		`CREATE TABLE "Jobs-1"."App_pgqueuer_statistics" (`,
		`CREATE TABLE "Jobs-1"."App_pgqueuer_schedules" (`,
		`CREATE FUNCTION "Jobs-1"."App_fn_pgqueuer_changed"()`,
		`CREATE TRIGGER "App_tg_pgqueuer_changed"`,
		`EXECUTE FUNCTION "Jobs-1"."App_fn_pgqueuer_changed"()`,
		`PERFORM pg_notify('App_ch_pgqueuer', json_build_object('channel', 'App_ch_pgqueuer',`,
		`IF TG_OP <> 'UPDATE' THEN`,
		`CREATE INDEX "App_pgqueuer_ep_prio_id_idx" ON "Jobs-1"."App_pgqueuer" (entrypoint, priority DESC, id ASC) WHERE status = 'queued'`,
		`'type', 'table_changed_event'`,
		`FOR EACH STATEMENT`,
		`CREATE UNIQUE INDEX "App_pgqueuer_unique_dedupe_key" ON "Jobs-1"."App_pgqueuer" (dedupe_key)`,
	} {
		if !strings.Contains(install, want) {
			t.Errorf("InstallSQL lacks %q", want)
		}
	}
	if strings.Contains(install, "{") {
		t.Errorf("InstallSQL has an unreplaced placeholder:\n%s", install)
	}
	un := n.UninstallSQL()
	if !strings.Contains(un, `DROP TYPE IF EXISTS "Jobs-1"."App_pgqueuer_status" CASCADE`) {
		t.Errorf("UninstallSQL = %s", un)
	}
	if s := n.CreateSchemaSQL(); s != `CREATE SCHEMA "Jobs-1"` {
		t.Errorf("CreateSchemaSQL = %s", s)
	}
}

func TestNamesLengthLimits(t *testing.T) {
	t.Parallel()
	if pgschema.MaxPrefixBytes != 31 {
		t.Fatalf("MaxPrefixBytes = %d, want 31", pgschema.MaxPrefixBytes)
	}
	if _, err := pgschema.NewNames(strings.Repeat("p", 31), ""); err != nil {
		t.Errorf("31-byte prefix rejected: %v", err)
	}
	_, err := pgschema.NewNames(strings.Repeat("p", 32), "")
	if !errors.Is(err, pgschema.ErrInvalidIdentifier) {
		t.Fatalf("32-byte prefix: err = %v, want ErrInvalidIdentifier", err)
	}
	if !strings.Contains(err.Error(), "1 bytes too long") {
		t.Errorf("error does not say by how much: %v", err)
	}
	// Bytes, not runes: 10 three-byte runes are 30 bytes, 11 are 33.
	if _, err := pgschema.NewNames(strings.Repeat("é", 15), ""); err != nil {
		t.Errorf("30-byte unicode prefix rejected: %v", err)
	}
	if _, err := pgschema.NewNames(strings.Repeat("日", 11), ""); !errors.Is(err, pgschema.ErrInvalidIdentifier) {
		t.Errorf("33-byte unicode prefix accepted: %v", err)
	}
	if _, err := pgschema.NewNames("", strings.Repeat("s", 63)); err != nil {
		t.Errorf("63-byte schema rejected: %v", err)
	}
	if _, err := pgschema.NewNames("", strings.Repeat("s", 64)); !errors.Is(err, pgschema.ErrInvalidIdentifier) {
		t.Errorf("64-byte schema accepted: %v", err)
	}
}

func TestNamesRejectBadInput(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ prefix, schema string }{
		{`x"`, ""}, {"x;", ""}, {"x y", ""}, {"x\x00", ""}, {"x'", ""},
		{"", `s"`}, {"", "s;drop"}, {"", "s t"}, {"", "s\x00"}, {"", "s."},
	} {
		if _, err := pgschema.NewNames(c.prefix, c.schema); !errors.Is(err, pgschema.ErrInvalidIdentifier) {
			t.Errorf("NewNames(%q, %q) = %v, want ErrInvalidIdentifier", c.prefix, c.schema, err)
		}
	}
}

func TestTransitionSQL(t *testing.T) {
	t.Parallel()
	n, err := pgschema.NewNames("", "s")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ev       statemachine.Event
		sources  string
		to       string
		terminal bool
	}{
		{statemachine.Claim, "('queued')", "'picked'", false},
		{statemachine.Complete, "('picked')", "'successful'", true},
		{statemachine.Error, "('picked')", "'exception'", true},
		{statemachine.Cancel, "('queued', 'picked')", "'canceled'", true},
		{statemachine.Hold, "('picked')", "'failed'", false},
		{statemachine.Retry, "('picked')", "'queued'", false},
		{statemachine.Requeue, "('failed')", "'queued'", false},
		{statemachine.Delete, "('queued', 'failed')", "'deleted'", true},
	}
	for _, c := range cases {
		st, err := n.Transition(c.ev, []int64{1, 2}, `{"x":1}`)
		if err != nil {
			t.Errorf("%s: %v", c.ev, err)
			continue
		}
		if !strings.Contains(st.SQL, "status IN "+c.sources) {
			t.Errorf("%s: guard is not on %s:\n%s", c.ev, c.sources, st.SQL)
		}
		if !strings.Contains(st.SQL, "clock_timestamp(), id, "+c.to+",") {
			t.Errorf("%s: does not log %s:\n%s", c.ev, c.to, st.SQL)
		}
		if got := strings.Contains(st.SQL, "DELETE FROM"); got != c.terminal {
			t.Errorf("%s: deletes = %v, want %v", c.ev, got, c.terminal)
		}
		wantArgs := 1
		if c.ev == statemachine.Error {
			wantArgs = 2
		}
		if len(st.Args) != wantArgs {
			t.Errorf("%s: %d args, want %d", c.ev, len(st.Args), wantArgs)
		}
	}
	if _, err := n.Transition(statemachine.Enqueue, []int64{1}, ""); !errors.Is(err, statemachine.ErrIllegalTransition) {
		t.Errorf("Transition(Enqueue) = %v", err)
	}
	if _, err := n.Transition(statemachine.Event(99), []int64{1}, ""); !errors.Is(err, statemachine.ErrUnknownEvent) {
		t.Errorf("Transition(99) = %v", err)
	}
	if _, err := n.Transition(statemachine.Complete, nil, ""); !errors.Is(err, jobwatch.ErrInvalidID) {
		t.Errorf("Transition(no ids) = %v", err)
	}
}

func TestJobIDs(t *testing.T) {
	t.Parallel()
	got, err := pgschema.JobIDs([]jobwatch.JobID{3, 1, 3, 2, 1})
	if err != nil || len(got) != 3 || got[0] != 3 || got[1] != 1 || got[2] != 2 {
		t.Errorf("JobIDs = %v, %v; want [3 1 2]", got, err)
	}
	for _, bad := range [][]jobwatch.JobID{nil, {}, {0}, {1, -1}} {
		if _, err := pgschema.JobIDs(bad); !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("JobIDs(%v) = %v, want ErrInvalidID", bad, err)
		}
	}
}

func TestTransitionFailure(t *testing.T) {
	t.Parallel()
	err := pgschema.TransitionFailure(statemachine.Complete, 7, "", "")
	var te *statemachine.TransitionError
	if !errors.Is(err, queue.ErrUnknownJob) || !errors.Is(err, statemachine.ErrIllegalTransition) ||
		!errors.As(err, &te) || te.ID != 7 || te.From != statemachine.None {
		t.Errorf("unknown job: %v", err)
	}
	err = pgschema.TransitionFailure(statemachine.Complete, 8, "queued", "queued")
	if !errors.As(err, &te) || te.ID != 8 || te.From != statemachine.Queued || errors.Is(err, queue.ErrUnknownJob) {
		t.Errorf("queued job: %v", err)
	}
	err = pgschema.TransitionFailure(statemachine.Cancel, 9, "", "successful")
	if !errors.As(err, &te) || te.From != statemachine.Successful {
		t.Errorf("finished job: %v", err)
	}
	err = pgschema.TransitionFailure(statemachine.Complete, 10, "picked", "picked")
	if !errors.As(err, &te) || te.From != statemachine.Picked || !strings.Contains(err.Error(), "concurrently") {
		t.Errorf("concurrently changed job: %v", err)
	}
	if got := pgschema.Missing([]int64{1, 2, 3, 4}, []int64{3, 1}); len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Errorf("Missing = %v", got)
	}
}

func TestEnqueueValidation(t *testing.T) {
	t.Parallel()
	n, _ := pgschema.NewNames("", "")
	bad := []queue.NewJob{
		{},
		{Entrypoint: "a\x00b"},
		{Entrypoint: "a", ExecuteAfter: -1},
		{Entrypoint: "a", Priority: 1 << 40},
		{Entrypoint: "a", DedupeKey: "\xff"},
		{Entrypoint: "a", Headers: map[string]any{"f": func() {}}},
	}
	for _, j := range bad {
		if _, err := n.Enqueue([]queue.NewJob{j}); !errors.Is(err, queue.ErrInvalidJob) {
			t.Errorf("Enqueue(%+v) = %v, want ErrInvalidJob", j, err)
		}
	}
	if _, err := n.Enqueue(nil); !errors.Is(err, queue.ErrInvalidJob) {
		t.Errorf("Enqueue(nil) = %v", err)
	}
	st, err := n.Enqueue([]queue.NewJob{{Entrypoint: "a", Payload: []byte("p"), Headers: map[string]any{"k": 1}}, {Entrypoint: "b"}})
	if err != nil || len(st.Args) != 6 {
		t.Fatalf("Enqueue = %+v, %v", st, err)
	}
	if h := st.Args[5].([]string); h[0] != `{"k":1}` || h[1] != "" {
		t.Errorf("headers arg = %q", h)
	}
	for _, req := range []queue.ClaimRequest{
		{Limit: 1}, {Entrypoints: []string{""}, Limit: 1}, {Entrypoints: []string{"a"}},
		{Entrypoints: []string{"a"}, Limit: queue.MaxClaimLimit + 1},
	} {
		if _, err := n.ClaimSelect(req); !errors.Is(err, queue.ErrInvalidJob) {
			t.Errorf("ClaimSelect(%+v) = %v", req, err)
		}
	}
}

func TestUUID(t *testing.T) {
	t.Parallel()
	u := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8}
	s := pgschema.FormatUUID(u)
	if s != "12345678-9abc-def0-0102-030405060708" {
		t.Fatalf("FormatUUID = %s", s)
	}
	back, err := pgschema.ParseUUID(s)
	if err != nil || back != u {
		t.Fatalf("ParseUUID = %x, %v", back, err)
	}
	for _, bad := range []string{"", "12345678", "12345678-9abc-def0-0102-03040506070g", "123456789abcdef00102030405060708"} {
		if _, err := pgschema.ParseUUID(bad); err == nil {
			t.Errorf("ParseUUID(%q) accepted", bad)
		}
	}
}

func TestInstallationCheck(t *testing.T) {
	t.Parallel()
	all := pgschema.Installation{SchemaExists: true, StatusType: true, Queue: true, Log: true, Statistics: true,
		Schedules: true, Function: true, Trigger: true}
	if !all.Complete() || all.Empty() || all.Check() != nil {
		t.Errorf("complete installation misjudged")
	}
	none := pgschema.Installation{}
	if none.Complete() || !none.Empty() || none.Check() != nil {
		t.Errorf("empty installation misjudged")
	}
	part := all
	part.Trigger = false
	if err := part.Check(); !errors.Is(err, pgschema.ErrPartialInstall) || !strings.Contains(err.Error(), "trigger") {
		t.Errorf("partial installation: %v", err)
	}
}

func TestHeartbeatFailure(t *testing.T) {
	t.Parallel()
	var np *queue.NotPickedError
	err := pgschema.HeartbeatFailure(7, "", "")
	if !errors.As(err, &np) || np.ID != 7 || np.State != statemachine.None ||
		!errors.Is(err, queue.ErrUnknownJob) || !errors.Is(err, queue.ErrNotPicked) {
		t.Errorf("unknown job: %v", err)
	}
	err = pgschema.HeartbeatFailure(8, "queued", "queued")
	if !errors.As(err, &np) || np.State != statemachine.Queued || errors.Is(err, queue.ErrUnknownJob) {
		t.Errorf("queued job: %v", err)
	}
	err = pgschema.HeartbeatFailure(9, "", "successful")
	if !errors.As(err, &np) || np.State != statemachine.Successful {
		t.Errorf("finished job: %v", err)
	}
	if err := pgschema.HeartbeatFailure(10, "bogus", ""); !errors.Is(err, queue.ErrNotPicked) || errors.Is(err, queue.ErrUnknownJob) {
		t.Errorf("unknown status: %v", err)
	}
}

func TestScanTransition(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	row := func(status, tb string) func(dest ...any) error {
		return func(dest ...any) error {
			*dest[0].(*string), *dest[1].(*time.Time), *dest[2].(*string), *dest[3].(*int64), *dest[4].(*string) = status, at, "ep", 3, tb
			return nil
		}
	}
	tr, err := pgschema.ScanTransition(row("exception", `{"exception_type": "ValueError"}`))
	if err != nil || tr.State != statemachine.Exception || !tr.At.Equal(at) || tr.Entrypoint != "ep" || tr.Priority != 3 ||
		tr.Traceback == nil || tr.Traceback.ExceptionType != "ValueError" {
		t.Errorf("ScanTransition = %+v, %v", tr, err)
	}
	if tr, err := pgschema.ScanTransition(row("queued", "")); err != nil || tr.Traceback != nil {
		t.Errorf("no traceback: %+v, %v", tr, err)
	}
	if _, err := pgschema.ScanTransition(row("nonsense", "")); !errors.Is(err, statemachine.ErrUnknownState) {
		t.Errorf("bad status: %v", err)
	}
}
