package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the "postgres" database/sql driver

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
)

// backend is what the service and the worker get in production: a
// queue.Queue that a Watcher can watch.
type backend interface {
	jobwatch.Driver
	queue.Queue
	Install(ctx context.Context) (jwpgx.InstallResult, error)
}

// TestOnPostgreSQL runs the service and the worker, unchanged, on
// backends/pgx and backends/pq over the test database
// (JOBWATCH_TEST_DATABASE_URL), each in a fresh schema.
func TestOnPostgreSQL(t *testing.T) {
	for name, open := range map[string]func(t *testing.T, schema string) backend{
		"pgx": func(t *testing.T, schema string) backend {
			pool, err := pgxpool.New(context.Background(), pgtest.DSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			b, err := jwpgx.New(pool, jwpgx.WithSchema(schema), jwpgx.WithPrefix(schema+"_"))
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		"pq": func(t *testing.T, schema string) backend {
			db, err := sqlx.Open("postgres", pgtest.DSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			b, err := jwpq.New(db, pgtest.DSN(), jwpq.WithSchema(schema), jwpq.WithPrefix(schema+"_"))
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := pgtest.Context(t)
			q := open(t, pgtest.Schema(t))
			if _, err := q.Install(ctx); err != nil {
				t.Fatal(err)
			}
			w, err := jobwatch.New(q)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			runOnPostgreSQL(t, q, w)
		})
	}
}

func runOnPostgreSQL(t *testing.T, q queue.Queue, w *jobwatch.Watcher) {
	release := make(chan struct{})
	rendering := make(chan string, 10)
	render := func(ctx context.Context, image string) error {
		rendering <- image
		if image == "dog.png" {
			select { // held until the test lets it finish
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return pretend(ctx, image)
	}
	runWorker(t, &Worker{Queue: q, Render: render, Poll: 10 * time.Millisecond})
	srv := httptest.NewServer((&Service{Queue: q, Watcher: w}).Handler())
	defer srv.Close()
	post := func(query string) (int, Reply) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/thumbnails?"+query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Reply
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, r
	}

	if code, r := post("image=cat.png"); code != http.StatusOK || r.State != "successful" {
		t.Errorf("cat.png: %d %+v", code, r)
	}
	if code, r := post("image=bad.png"); code != http.StatusUnprocessableEntity || r.Error != "bad.png: not a PNG file" {
		t.Errorf("bad.png: %d %+v", code, r)
	}
	// dog.png is held while it renders: a second request joins its job.
	first := make(chan Reply, 1)
	go func() { _, r := post("image=dog.png"); first <- r }()
	for <-rendering != "dog.png" {
	}
	code, joined := post("image=dog.png&wait=10ms")
	if code != http.StatusAccepted || !joined.Joined || joined.State != "picked" {
		t.Errorf("second dog.png while the first renders: %d %+v, want 202, joined, picked", code, joined)
	}
	close(release)
	if r := <-first; r.State != "successful" || r.Job != joined.Job {
		t.Errorf("first dog.png: %+v, want job %d successful", r, joined.Job)
	}
	resp, err := http.Get(srv.URL + fmt.Sprintf("/jobs/%d", joined.Job))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.History) != 3 || r.State != "successful" {
		t.Errorf("GET /jobs/%d = %+v, %v", joined.Job, r, err)
	}
}
