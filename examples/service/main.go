// Command service is a small web service written against queue.Queue and a
// jobwatch.Watcher: a worker that makes thumbnails (worker.go) and an HTTP
// handler that asks for one and waits for it (handler.go). Its tests
// (service_test.go) run it on the in-memory backend, through jobwatchtest;
// postgres_test.go runs the same code, unchanged, on backends/pgx and
// backends/pq.
//
//	go run ./examples/service              # in memory
//	go run ./examples/service -dsn URL     # on PostgreSQL, in a throwaway queue
//
// main starts the service on a local port with one worker, sends it a few
// requests as a client would, prints the answers and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/examples/internal/examplequeue"
)

func main() {
	log.SetFlags(0)
	dsn := flag.String("dsn", "", "PostgreSQL connection string; empty runs on the in-memory backend")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dsn); err != nil {
		log.Fatal(err)
	}
}

// render is the pretend thumbnail maker: corrupt images fail, slow ones
// take a second.
func render(ctx context.Context, image string) error {
	d := 10 * time.Millisecond
	switch {
	case strings.HasPrefix(image, "corrupt"):
		return fmt.Errorf("%s: not a PNG file", image)
	case strings.HasPrefix(image, "slow"):
		d = time.Second
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func run(ctx context.Context, dsn string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	q, release, err := examplequeue.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer release()
	w, err := jobwatch.New(q)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.Close()) }()

	workCtx, stopWork := context.WithCancel(ctx)
	var worker sync.WaitGroup
	var workErr error
	worker.Go(func() {
		workErr = (&Worker{Queue: q, Render: render, Poll: 20 * time.Millisecond, Logf: log.Printf}).Run(workCtx)
	})
	defer func() { stopWork(); worker.Wait(); err = errors.Join(err, workErr) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: (&Service{Queue: q, Watcher: w}).Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	for _, c := range []struct{ method, path string }{
		{"POST", "/thumbnails?image=cat.png"},
		{"POST", "/thumbnails?image=corrupt.png"},
		{"POST", "/thumbnails?image=slow.png&wait=100ms"},
		{"GET", "/jobs/2"},
		{"GET", "/jobs/99"},
	} {
		status, body, err := call(ctx, c.method, base+c.path)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s: %d %s\n", c.method, c.path, status, body)
	}
	return nil
}

// call makes one request and returns the status and the body, with the
// history's times left out so that the output can be compared.
func call(ctx context.Context, method, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, timesOmitted(strings.TrimSpace(string(b))), nil
}

// timesOmitted drops the "at" times of a Reply's history, for output that
// must not vary from run to run.
func timesOmitted(body string) string {
	var r Reply
	if json.Unmarshal([]byte(body), &r) != nil || r.History == nil {
		return body
	}
	states := make([]string, len(r.History))
	for i, s := range r.History {
		states[i] = s.State
	}
	r.History = nil
	b, _ := json.Marshal(r)
	return string(b) + " history: " + strings.Join(states, " ")
}
