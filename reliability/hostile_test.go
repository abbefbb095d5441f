package reliability_test

// Hostile notifications on the queue's channel, on both database backends:
// garbage, wrong types, payloads at the size limit, other event types and a
// flood of 10,000 a second, while real jobs complete under a Watcher.
//
// The parsers themselves are fuzzed where they live:
// backends/internal/notify/payload_fuzz_test.go (FuzzParse) and
// statemachine/fuzz_test.go (FuzzParseState, FuzzParseEvent,
// FuzzTransition).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/statemachine"
)

func stressQuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func stressQuoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// stressPad pads a JSON object (ending in '}') with a "pad" field to exactly
// n bytes.
func stressPad(obj string, n int) string {
	head := strings.TrimSuffix(obj, "}") + `,"pad":"`
	return head + strings.Repeat("x", n-len(head)-2) + `"}`
}

// TestHostileNotifications sends hostile payloads on the channel three
// ways (pg_notify from another connection, the backend's NotifyRaw, a plain
// NOTIFY statement), then floods it from another connection at 10,000
// notifications a second for two seconds, while jobs complete. The Watcher
// resolves every completed job with its real outcome, never resolves the
// jobs that stay queued, picked or held, keeps its subscription (no
// listener error, no reconnect), counts every foreign payload as ignored,
// and reads statuses at most about twice per debounce window during the
// flood instead of once per notification. The server refuses payloads of
// 8,000 bytes and more, invalid UTF-8 and NUL.
func TestHostileNotifications(t *testing.T) {
	for _, kind := range stressKinds {
		t.Run(kind, func(t *testing.T) {
			const debounce = 50 * time.Millisecond
			logs := newStressLogs(slog.LevelInfo)
			e := newStressEnv(t, kind, stressEnvOpts{maxConns: 6, logger: logs.logger()})
			w := newStressWatcher(t, e.b, jobwatch.WithDebounce(debounce), jobwatch.WithRefreshInterval(time.Hour),
				jobwatch.WithNotFoundGrace(time.Hour), jobwatch.WithLogger(logs.logger()))
			ctx := e.ctx
			ch := e.b.Channel()
			queueName := e.prefix + "pgqueuer"
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))

			// Jobs that must never resolve, and jobs that will.
			ids := e.enqueue(3+24, "hostile")
			queued, picked, held := ids[0], ids[1], ids[2]
			e.apply(statemachine.Claim, picked, held)
			e.apply(statemachine.Hold, held)
			targets := ids[3:]
			outcomes := []statemachine.State{statemachine.Successful, statemachine.Exception, statemachine.Canceled, statemachine.Deleted}
			want := map[jobwatch.JobID]statemachine.State{}
			for i, id := range targets {
				want[id] = outcomes[i%len(outcomes)]
			}
			finish := func(id jobwatch.JobID) error {
				for _, ev := range pgtest.PathTo(want[id]) {
					if err := e.b.Apply(ctx, ev, id); err != nil {
						return fmt.Errorf("job %d: %s: %w", id, ev, err)
					}
				}
				return nil
			}
			waitCtx, cancelWaits := context.WithCancel(ctx)
			defer cancelWaits()
			stay := map[jobwatch.JobID]<-chan stressResult{}
			for _, id := range []jobwatch.JobID{queued, picked, held} {
				stay[id] = stressGoWait(waitCtx, w, id)
			}
			results := map[jobwatch.JobID]<-chan stressResult{}
			for _, id := range targets {
				results[id] = stressGoWait(waitCtx, w, id)
			}
			stressUntil(t, 20*time.Second, "every wait registered and read once", func() bool {
				st := w.Stats()
				return st.Waiters == len(ids) && st.Reads.Total() > 0 && st.Listening
			})

			// Phase 1: hostile payloads, three ways.
			other := pgtest.Connect(t)
			type path struct {
				name string
				send func(payload string) error
			}
			paths := []path{
				{"pg_notify from another connection", func(p string) error {
					_, err := other.Exec(ctx, "SELECT pg_notify($1, $2)", ch, p)
					return err
				}},
				{"NotifyRaw", func(p string) error { return e.b.NotifyRaw(ctx, p) }},
				{"NOTIFY statement", func(p string) error {
					_, err := e.admin.Exec(ctx, "NOTIFY "+stressQuoteIdent(ch)+", "+stressQuoteLiteral(p))
					return err
				}},
			}
			now := time.Now().UTC().Format(time.RFC3339Nano)
			var ignorable []string // every one must be dropped and counted
			for range 30 {         // random bytes, made sendable (valid UTF-8, no NUL)
				b := make([]byte, 1+rng.IntN(2000))
				for i := range b {
					b[i] = byte(rng.UintN(256))
				}
				ignorable = append(ignorable, strings.ReplaceAll(strings.ToValidUTF8(string(b), "\uFFFD"), "\x00", ""))
			}
			ignorable = append(ignorable,
				// invalid JSON
				"", " ", "{", "}", "[", `{"type":`, `{"type":"table_changed_event"`, `{"type":"table_changed_event",}`,
				`{"type":"table_changed_event"}}`, `{'type':'table_changed_event'}`, "[1,2,3]", "null", "true", "42",
				`"table_changed_event"`, strings.Repeat("[", 5000), strings.Repeat(`{"a":`, 1000), "\\u0000",
				"table_changed_event", "\u202e\ufeff\U0001F4A9",
				// wrong field types
				`{"type":5}`, `{"type":null}`, `{"type":["table_changed_event"]}`, `{"type":{"x":1}}`,
				`{"type":"table_changed_event","table":5}`, `{"type":"table_changed_event","table":["`+queueName+`"]}`,
				`{"type":"table_changed_event","operation":{}}`, `{"type":"table_changed_event","table":true}`,
				`{"type":"cancellation_event","ids":"1,2"}`, `{"type":"cancellation_event","ids":[1,"x"]}`,
				`{"type":"cancellation_event","ids":{"1":true}}`, `{"type":"health_check_event","id":7}`,
				// other event types, PgQueuer's and unknown ones
				fmt.Sprintf(`{"channel":%q,"ids":[%d,%d,%d],"sent_at":%q,"type":"cancellation_event"}`, ch, queued, picked, held, now),
				fmt.Sprintf(`{"channel":%q,"id":"c0ffee00-0000-4000-8000-000000000000","sent_at":%q,"type":"health_check_event"}`, ch, now),
				fmt.Sprintf(`{"channel":%q,"entrypoint_count":{"hostile":3},"sent_at":%q,"type":"requests_per_second_event"}`, ch, now),
				`{"type":"something_else"}`, `{"type":""}`, `{"type":"TABLE_CHANGED_EVENT"}`, `{"type":"table_changed_event "}`,
				// a change of another table
				fmt.Sprintf(`{"channel":%q,"operation":"update","sent_at":%q,"table":"pgqueuer","type":"table_changed_event"}`, ch, now),
				fmt.Sprintf(`{"channel":%q,"operation":"delete","sent_at":%q,"table":%q,"type":"table_changed_event"}`, ch, now, e.prefix+"pgqueuer_log"),
				fmt.Sprintf(`{"operation":"update","table":%q,"type":"table_changed_event"}`, strings.ToUpper(queueName)),
				// 7,999 bytes, the largest the server sends
				strings.Repeat("x", 7999),
				strings.Repeat("é", 3999)+"x",
				stressPad(`{"type":"unknown_event"}`, 7999),
				stressPad(fmt.Sprintf(`{"type":"table_changed_event","table":"not_%s"}`, queueName), 7999),
			)
			// Spurious hints: a change of our table that did not happen. They
			// cost a read and must resolve nothing wrongly.
			hints := []string{
				`{"type":"table_changed_event"}`,
				`{"type":"table_changed_event","table":null,"operation":null}`,
				fmt.Sprintf(`{"type":"table_changed_event","table":%q,"operation":"truncate"}`, queueName),
				stressPad(fmt.Sprintf(`{"type":"table_changed_event","table":%q,"operation":"update"}`, queueName), 7999),
				// encoding/json matches keys case-insensitively, so these are
				// hints too (PgQueuer, in Python, would reject them).
				`{"TYPE":"table_changed_event"}`, `{"Type":"table_changed_event"}`,
			}
			for _, p := range append(ignorable, hints...) {
				if len(p) >= 8000 {
					t.Fatalf("test bug: a %d-byte payload in the sendable set", len(p))
				}
			}
			// Refused by the server, whichever way they are sent.
			type refusal struct {
				name, payload, msg string
			}
			refused := []refusal{
				{"8,000 bytes", strings.Repeat("x", 8000), "payload string too long"},
				{"8,000 bytes of JSON", stressPad(fmt.Sprintf(`{"type":"table_changed_event","table":%q}`, queueName), 8000), "payload string too long"},
				{"8,000 bytes in 4,000 characters", strings.Repeat("é", 4000), "payload string too long"},
				{"100,000 bytes", strings.Repeat("y", 100000), "payload string too long"},
				{"invalid UTF-8", "{\"type\":\"table_changed_event\",\"table\":\"\xff\xfe\"}", ""},
				{"NUL", "{\"type\":\"table_changed_event\"}\x00", ""},
			}

			completedEarly := targets[:len(targets)/2]
			sent, hinted := 0, 0
			for i, p := range ignorable {
				pt := paths[i%len(paths)]
				if err := pt.send(p); err != nil {
					t.Fatalf("%s: %s refused a %d-byte payload %.60q: %v", kind, pt.name, len(p), p, err)
				}
				sent++
				if i%8 == 0 && len(completedEarly) > 0 {
					if err := finish(completedEarly[0]); err != nil {
						t.Fatal(err)
					}
					completedEarly = completedEarly[1:]
				}
			}
			for i, p := range hints {
				if err := paths[i%len(paths)].send(p); err != nil {
					t.Fatalf("%s: hint refused: %v", kind, err)
				}
				hinted++
			}
			for _, r := range refused {
				for _, pt := range paths {
					if pt.name == "NOTIFY statement" && strings.ContainsRune(r.payload, 0) {
						continue // a NUL cannot be written in SQL text at all
					}
					err := pt.send(r.payload)
					switch {
					case err == nil:
						t.Errorf("%s: %s: the server accepted a payload it must refuse (%s)", kind, pt.name, r.name)
					case !strings.Contains(err.Error(), r.msg):
						t.Errorf("%s: %s: %s refused with %v; want %q", kind, pt.name, r.name, err, r.msg)
					}
				}
			}
			for _, id := range completedEarly {
				if err := finish(id); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range targets[:len(targets)/2] {
				r := stressRecv(t, results[id], 30*time.Second, fmt.Sprintf("%s: Wait(%d) during the hostile payloads", kind, id))
				if r.err != nil || r.state != want[id] {
					t.Errorf("%s: Wait(%d) = %v, %v; want %v", kind, id, r.state, r.err, want[id])
				}
			}
			stressUntil(t, 30*time.Second, fmt.Sprintf("%d hostile payloads counted as ignored", sent), func() bool {
				return w.Stats().IgnoredNotifications >= uint64(sent)
			})
			t.Logf("%s: %d hostile payloads ignored, %d spurious hints, %d refused by the server; %d jobs resolved meanwhile",
				kind, sent, hinted, len(refused), len(targets)/2)

			// Phase 2: a flood from another connection, 1,000 distinct
			// notifications per transaction every 100 ms, a quarter of them
			// hints for our table; the rest of the jobs complete meanwhile.
			const batch, ticks = 1000, 20
			flood := `SELECT pg_notify($1, CASE g % 4
				WHEN 0 THEN json_build_object('channel', $1::text, 'operation', 'update', 'sent_at', clock_timestamp(),
					'table', $2::text, 'type', 'table_changed_event', 'seq', $3::bigint + g)::text
				WHEN 1 THEN 'garbage ' || ($3::bigint + g)::text || ' {'
				WHEN 2 THEN json_build_object('type', 'cancellation_event', 'ids', $4::bigint[], 'seq', $3::bigint + g)::text
				ELSE json_build_object('type', 'table_changed_event', 'table', 'not_' || $2::text, 'seq', $3::bigint + g)::text
				END) FROM generate_series(1, $5::int) AS g`
			stayIDs := []int64{int64(queued), int64(picked), int64(held)}
			before := w.Stats()
			floodStart := time.Now()
			var wg sync.WaitGroup
			var finishErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				pace := time.NewTicker(150 * time.Millisecond)
				defer pace.Stop()
				for _, id := range targets[len(targets)/2:] {
					select {
					case <-pace.C:
					case <-ctx.Done():
						return
					}
					if err := finish(id); err != nil {
						finishErr = err
						return
					}
				}
			}()
			tick := time.NewTicker(2 * time.Second / ticks)
			floodSent := 0
			for i := range ticks {
				if _, err := other.Exec(ctx, flood, ch, queueName, int64(i*batch), stayIDs, batch); err != nil {
					t.Fatalf("%s: flood: %v", kind, err)
				}
				floodSent += batch
				if i < ticks-1 {
					<-tick.C
				}
			}
			tick.Stop()
			floodTook := time.Since(floodStart)
			wg.Wait()
			if finishErr != nil {
				t.Fatal(finishErr)
			}
			for _, id := range targets[len(targets)/2:] {
				r := stressRecv(t, results[id], 30*time.Second, fmt.Sprintf("%s: Wait(%d) during the flood", kind, id))
				if r.err != nil || r.state != want[id] {
					t.Errorf("%s: Wait(%d) = %v, %v; want %v", kind, id, r.state, r.err, want[id])
				}
			}
			ignoredFlood := floodSent * 3 / 4
			stressUntil(t, 60*time.Second, "every flooded notification consumed", func() bool {
				return w.Stats().IgnoredNotifications >= uint64(sent+ignoredFlood)
			})
			consumed := time.Since(floodStart)
			after := w.Stats()
			reads := after.Reads.Total() - before.Reads.Total()
			windows := int(consumed/debounce) + 1
			t.Logf("%s: flood of %d notifications in %v (%.0f/s); consumed after %v; %d hints delivered (%d resync reads), %d status reads (bound %d: 2 per %v window, +2)",
				kind, floodSent, floodTook.Round(time.Millisecond), float64(floodSent)/floodTook.Seconds(), consumed.Round(time.Millisecond),
				after.Notifications-before.Notifications, after.Reads.Resync-before.Reads.Resync, reads, 2*windows+2, debounce)
			if reads > uint64(2*windows+2) {
				t.Errorf("%s: %d status reads in %v of flood: more than 2 per %v debounce window", kind, reads, consumed, debounce)
			}
			if after.Notifications-before.Notifications <= reads {
				t.Errorf("%s: %d notifications caused %d reads: nothing was coalesced", kind, after.Notifications-before.Notifications, reads)
			}

			// Nothing resolved wrongly, nothing broke, nothing extra counted.
			truth := e.truth(ids)
			for id, chn := range stay {
				if r, pending := stressPending(chn); !pending {
					t.Errorf("%s: Wait(%d) returned %v, %v; the job is still %v", kind, id, r.state, r.err, truth[id])
				}
			}
			if truth[queued] != statemachine.Queued || truth[picked] != statemachine.Picked || truth[held] != statemachine.Failed {
				t.Errorf("%s: the untouched jobs changed: %v %v %v", kind, truth[queued], truth[picked], truth[held])
			}
			for id, st := range want {
				if truth[id] != st {
					t.Errorf("%s: job %d is %v, want %v", kind, id, truth[id], st)
				}
			}
			if after.ListenErrors != 0 || after.Reconnects != 0 || after.ReadErrors != 0 || !after.Listening {
				t.Errorf("%s: the Watcher suffered: %d listen errors, %d reconnects, %d read errors, listening %v (last error %v)",
					kind, after.ListenErrors, after.Reconnects, after.ReadErrors, after.Listening, after.LastError)
			}
			if got := after.IgnoredNotifications; got != uint64(sent+ignoredFlood) {
				t.Errorf("%s: %d notifications ignored, want exactly %d", kind, got, sent+ignoredFlood)
			}
			for _, rec := range logs.records() {
				t.Errorf("%s: logged at info or above: %s", kind, rec)
			}
			cancelWaits()
			for id, chn := range stay {
				if r := stressRecv(t, chn, 10*time.Second, "a cancelled wait"); !errors.Is(r.err, context.Canceled) {
					t.Errorf("%s: cancelled Wait(%d) = %v, %v; want context.Canceled", kind, id, r.state, r.err)
				}
			}

			// Still alive: a new job resolves through a notification.
			id := e.enqueue(1, "hostile")[0]
			done := stressGoWait(ctx, w, id)
			e.apply(statemachine.Claim, id)
			e.apply(statemachine.Complete, id)
			if r := stressRecv(t, done, 30*time.Second, "Wait after the flood"); r.err != nil || r.state != statemachine.Successful {
				t.Errorf("%s: Wait after the flood = %v, %v; want successful", kind, r.state, r.err)
			}
		})
	}
}
