package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/jobwatchtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// The service and the worker are tested on the in-memory backend. Most
// tests run in a synctest bubble: synctest.Wait returns once a request is
// blocked in its Wait, so each test acts exactly then, and the waits'
// timeouts pass in virtual time.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// result is one answer of the handler.
type result struct {
	code   int
	reply  Reply
	header http.Header
}

// serve runs one request through h in a goroutine.
func serve(t *testing.T, h http.Handler, method, target string) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, target, nil))
		var r Reply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Errorf("%s %s: body %q: %v", method, target, rec.Body, err)
		}
		ch <- result{rec.Code, r, rec.Header()}
	}()
	return ch
}

// pretend renders: "bad" images fail; others work at once.
func pretend(_ context.Context, image string) error {
	if strings.HasPrefix(image, "bad") {
		return errors.New(image + ": not a PNG file")
	}
	return nil
}

func TestThumbnail(t *testing.T) {
	tests := []struct {
		name   string
		target string
		act    func(ctx context.Context, q *fake.Backend, wk *Worker) error // once the request waits; nil: nothing
		code   int
		want   Reply
	}{
		{"made", "/thumbnails?image=cat.png", runOnce, http.StatusOK, Reply{Job: 1, State: "successful"}},
		{"render failed", "/thumbnails?image=bad.png", runOnce, http.StatusUnprocessableEntity,
			Reply{Job: 1, State: "exception", Error: "bad.png: not a PNG file"}},
		{"canceled while queued", "/thumbnails?image=cat.png",
			func(ctx context.Context, q *fake.Backend, _ *Worker) error { return q.Cancel(ctx, 1) },
			http.StatusConflict, Reply{Job: 1, State: "canceled"}},
		{"nobody works on it", "/thumbnails?image=cat.png&wait=2s", nil, http.StatusAccepted,
			Reply{Job: 1, State: "queued", Error: "still running: see /jobs/1"}},
		{"no image", "/thumbnails", nil, http.StatusBadRequest, Reply{Error: "want ?image=NAME and an optional ?wait=DURATION up to 10s"}},
		{"bad wait", "/thumbnails?image=a&wait=soon", nil, http.StatusBadRequest, Reply{Error: "want ?image=NAME and an optional ?wait=DURATION up to 10s"}},
		{"wait too long", "/thumbnails?image=a&wait=1h", nil, http.StatusBadRequest, Reply{Error: "want ?image=NAME and an optional ?wait=DURATION up to 10s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, w := jobwatchtest.NewInBubble(t)
				wk := &Worker{Queue: q, Render: pretend}
				h := (&Service{Queue: q, Watcher: w}).Handler()
				start := time.Now()
				ch := serve(t, h, "POST", tc.target)
				synctest.Wait() // the request is waiting (or answered)
				if tc.act != nil {
					if err := tc.act(t.Context(), q, wk); err != nil {
						t.Fatal(err)
					}
				}
				r := <-ch
				if r.code != tc.code || r.reply.Job != tc.want.Job || r.reply.State != tc.want.State || r.reply.Error != tc.want.Error || r.reply.Joined {
					t.Fatalf("POST %s = %d %+v, want %d %+v", tc.target, r.code, r.reply, tc.code, tc.want)
				}
				if tc.code == http.StatusAccepted {
					if loc := r.header.Get("Location"); loc != "/jobs/1" {
						t.Errorf("Location %q", loc)
					}
					if d := time.Since(start); d != 2*time.Second {
						t.Errorf("answered after %s of virtual time, want the 2s asked for", d)
					}
				}
			})
		})
	}
}

func runOnce(ctx context.Context, _ *fake.Backend, wk *Worker) error {
	worked, err := wk.RunOnce(ctx)
	if err == nil && !worked {
		err = errors.New("the worker found no job")
	}
	return err
}

// TestThumbnailJoins: a thumbnail asked for while the same one is queued
// or running joins that job (the dedupe conflict names it); once it ended,
// the next request makes a new one.
func TestThumbnailJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, w := jobwatchtest.NewInBubble(t)
		wk := &Worker{Queue: q, Render: pretend}
		h := (&Service{Queue: q, Watcher: w}).Handler()
		first := serve(t, h, "POST", "/thumbnails?image=cat.png")
		synctest.Wait()
		second := serve(t, h, "POST", "/thumbnails?image=cat.png")
		synctest.Wait() // both wait on job 1
		if err := runOnce(t.Context(), q, wk); err != nil {
			t.Fatal(err)
		}
		a, b := <-first, <-second
		if a.code != http.StatusOK || b.code != http.StatusOK || a.reply.Job != 1 || b.reply.Job != 1 || a.reply.Joined || !b.reply.Joined {
			t.Fatalf("answers %d %+v and %d %+v; want both job 1, the second joined", a.code, a.reply, b.code, b.reply)
		}
		third := serve(t, h, "POST", "/thumbnails?image=cat.png")
		synctest.Wait()
		if err := runOnce(t.Context(), q, wk); err != nil {
			t.Fatal(err)
		}
		if c := <-third; c.reply.Job != 2 || c.reply.Joined {
			t.Fatalf("after the first ended: %+v, want a new job 2", c.reply)
		}
	})
}

func TestJobHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, w := jobwatchtest.NewInBubble(t)
		wk := &Worker{Queue: q, Render: pretend}
		h := (&Service{Queue: q, Watcher: w}).Handler()
		ch := serve(t, h, "POST", "/thumbnails?image=bad.png")
		synctest.Wait()
		time.Sleep(time.Minute) // the worker picks it up a minute later
		if err := runOnce(t.Context(), q, wk); err != nil {
			t.Fatal(err)
		}
		<-ch
		r := <-serve(t, h, "GET", "/jobs/1")
		if r.code != http.StatusOK || r.reply.State != "exception" || r.reply.Error != "bad.png: not a PNG file" || len(r.reply.History) != 3 {
			t.Fatalf("GET /jobs/1 = %d %+v", r.code, r.reply)
		}
		var states []string
		for _, s := range r.reply.History {
			states = append(states, s.State)
		}
		if got := strings.Join(states, " "); got != "queued picked exception" {
			t.Errorf("history %s", got)
		}
		if d := r.reply.History[1].At.Sub(r.reply.History[0].At); d != time.Minute {
			t.Errorf("picked %s after it was queued, want a minute", d)
		}
		for target, code := range map[string]int{"/jobs/2": http.StatusNotFound, "/jobs/0": http.StatusBadRequest, "/jobs/x": http.StatusBadRequest} {
			if r := <-serve(t, h, "GET", target); r.code != code {
				t.Errorf("GET %s = %d %+v, want %d", target, r.code, r.reply, code)
			}
		}
	})
}

// TestWorkerHeartbeats: while a job renders, the worker refreshes its
// heartbeat; once the job is canceled, the next heartbeat stops the render
// and the worker drops the job.
func TestWorkerHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := fake.New()
		defer q.Close()
		ctx := t.Context()
		rendering := make(chan struct{})
		wk := &Worker{Queue: q, Heartbeat: 10 * time.Second, Render: func(ctx context.Context, _ string) error {
			close(rendering)
			<-ctx.Done() // a long render, until told to stop
			return ctx.Err()
		}}
		ids, _ := q.Enqueue(ctx, queue.NewJob{Entrypoint: Entrypoint, Payload: []byte("big.png")})
		done := make(chan error, 1)
		go func() {
			_, err := wk.RunOnce(ctx)
			done <- err
		}()
		<-rendering
		claimed, _ := q.Inspect(ctx, ids[0])
		time.Sleep(25 * time.Second)
		now, _ := q.Inspect(ctx, ids[0])
		if d := now.Job.Heartbeat.Sub(claimed.Job.Heartbeat); d != 20*time.Second {
			t.Fatalf("after 25s the heartbeat moved %s, want two beats of 10s", d)
		}
		if err := q.Cancel(ctx, ids[0]); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("RunOnce = %v", err)
		}
		info, _ := q.Inspect(ctx, ids[0])
		if info.State != statemachine.Canceled || len(info.History) != 3 {
			t.Fatalf("job %+v, want canceled and nothing written after", info)
		}
	})
}

// TestWorkerRun: Run works every job, then stops with its ctx.
func TestWorkerRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := fake.New()
		defer q.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- (&Worker{Queue: q, Render: pretend}).Run(ctx) }()
		ids, _ := q.Enqueue(ctx, queue.NewJob{Entrypoint: Entrypoint, Payload: []byte("a")}, queue.NewJob{Entrypoint: Entrypoint, Payload: []byte("bad")})
		time.Sleep(time.Second) // ten polls
		for i, want := range []statemachine.State{statemachine.Successful, statemachine.Exception} {
			if st, _ := q.State(ids[i]); st != want {
				t.Errorf("job %d is %s, want %s", ids[i], st, want)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// runWorker runs wk until the test ends; Run must then return nil.
func runWorker(t *testing.T, wk *Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wk.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Worker.Run = %v", err)
		}
	})
}

// TestOverHTTP: without synctest, over a real HTTP server, with a worker
// running beside it, as in production; jobwatchtest's timings keep it
// fast.
func TestOverHTTP(t *testing.T) {
	q, w := jobwatchtest.New(t)
	runWorker(t, &Worker{Queue: q, Render: pretend, Poll: time.Millisecond})
	srv := httptest.NewServer((&Service{Queue: q, Watcher: w}).Handler())
	defer srv.Close()
	for image, want := range map[string]string{"cat.png": "successful", "bad.png": "exception"} {
		resp, err := http.Post(srv.URL+"/thumbnails?image="+image, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var r Reply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || r.State != want {
			t.Errorf("POST %s = %d %+v, %v; want %s", image, resp.StatusCode, r, err, want)
		}
	}
}
