package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jwqueue "github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// pgqueuerTraceback is a traceback as a Python PgQueuer worker writes it.
const pgqueuerTraceback = `{"job_id":%d,"timestamp":"2026-12-02T10:00:00.123456Z","exception_type":"ValueError",` +
	`"exception_message":"bad input","traceback":"Traceback (most recent call last):\n  ...","additional_context":{"entrypoint":"e"}}`

type jsonJob struct {
	ID        int64  `json:"id"`
	Status    string `json:"status"`
	Traceback *struct {
		JobID            int64           `json:"job_id"`
		Timestamp        time.Time       `json:"timestamp"`
		ExceptionType    string          `json:"exception_type"`
		ExceptionMessage string          `json:"exception_message"`
		Traceback        string          `json:"traceback"`
		Context          map[string]any  `json:"additional_context"`
		Raw              json.RawMessage `json:"raw"`
	} `json:"traceback"`
	History []struct {
		State string    `json:"state"`
		At    time.Time `json:"at"`
	} `json:"history"`
}

func parseJSONLines(t *testing.T, out string) map[int64]jsonJob {
	t.Helper()
	jobs := map[int64]jsonJob{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var j jsonJob
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		jobs[j.ID] = j
	}
	return jobs
}

// wait --json and status --json carry an exception job's traceback: the
// typed fields and the stored JSON as it is; other jobs have none.
func TestJSONCarriesTraceback(t *testing.T) {
	for _, driver := range []string{"pgx", "pq"} {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver)
			ids := d.enqueue(2)
			d.apply(complete, ids[0])
			d.apply([]statemachine.Event{statemachine.Claim}, ids[1])
			raw := strings.Replace(pgqueuerTraceback, "%d", strIDs(ids[1])[0], 1)
			if err := d.b.Exception(context.Background(), ids[1], jwqueue.Traceback{Raw: json.RawMessage(raw)}); err != nil {
				t.Fatal(err)
			}
			info, err := d.b.Inspect(context.Background(), ids[1])
			if err != nil || info.Traceback() == nil {
				t.Fatalf("Inspect: %+v, %v", info, err)
			}
			// As PostgreSQL returns it (jsonb orders the keys), compacted as
			// every JSON line is.
			var stored bytes.Buffer
			if err := json.Compact(&stored, info.Traceback().Raw); err != nil {
				t.Fatal(err)
			}
			for _, sub := range []string{"wait", "status"} {
				r := d.cmd("", sub, append([]string{"--json"}, strIDs(ids...)...)...)
				jobs := parseJSONLines(t, r.stdout)
				ok, failed := jobs[int64(ids[0])], jobs[int64(ids[1])]
				if ok.Status != "successful" || ok.Traceback != nil {
					t.Errorf("%s: successful job: %+v", sub, ok)
				}
				tb := failed.Traceback
				if failed.Status != "exception" || tb == nil {
					t.Fatalf("%s: exception job: %+v (%+v)", sub, failed, r)
				}
				if tb.JobID != int64(ids[1]) || tb.ExceptionType != "ValueError" || tb.ExceptionMessage != "bad input" ||
					!strings.HasPrefix(tb.Traceback, "Traceback (most recent call last):") || tb.Context["entrypoint"] != "e" ||
					!tb.Timestamp.Equal(time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.UTC)) {
					t.Errorf("%s: traceback fields %+v", sub, tb)
				}
				if string(tb.Raw) != stored.String() {
					t.Errorf("%s: raw %s, want %s", sub, tb.Raw, stored.String())
				}
			}
			// Text lines stay as they were.
			if r := d.cmd("", "status", strIDs(ids[1])...); r.stdout != strIDs(ids[1])[0]+" exception\n" {
				t.Errorf("status text: %+v", r)
			}
		})
	}
}

// status --history shows every transition with its time, as indented
// lines and as "history" in JSON.
func TestStatusHistory(t *testing.T) {
	d := newDB(t, "pgx")
	ids := d.enqueue(2)
	d.apply(complete, ids[0])
	r := d.cmd("", "status", append([]string{"--history", "--json"}, strIDs(ids...)...)...)
	jobs := parseJSONLines(t, r.stdout)
	var states []string
	for _, h := range jobs[int64(ids[0])].History {
		states = append(states, h.State)
		if time.Since(h.At) > time.Minute || h.At.After(time.Now()) {
			t.Errorf("transition time %s", h.At)
		}
	}
	if strings.Join(states, " ") != "queued picked successful" || len(jobs[int64(ids[1])].History) != 1 {
		t.Errorf("history %+v", jobs)
	}
	r = d.cmd("", "status", "--history", strIDs(ids[0])[0], "55555555")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != exitNotFound || len(lines) != 5 || lines[0] != strIDs(ids[0])[0]+" successful" || lines[4] != "55555555 unknown" {
		t.Fatalf("%+v", r)
	}
	for i, want := range []string{"queued", "picked", "successful"} {
		f := strings.Fields(lines[i+1])
		if _, err := time.Parse(historyTime, f[0]); err != nil || len(f) != 2 || f[1] != want || !strings.HasPrefix(lines[i+1], "  ") {
			t.Errorf("line %q: want an indented time and %s (%v)", lines[i+1], want, err)
		}
	}
}
