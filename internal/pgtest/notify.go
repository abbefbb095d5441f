package pgtest

import (
	"context"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// NotificationsOf runs write, then sends a sentinel payload with notify (on
// the channel conn listens on, from any session) and returns the
// notifications conn received before the sentinel, in order. A session
// receives the notifications of every transaction in commit order, so
// that is what write, and anything committed before it, sent. It fails
// the test when the sentinel does not arrive within 10 seconds.
func NotificationsOf(t testing.TB, conn *pgxv5.Conn, notify func(ctx context.Context, payload string) error, write func()) []*pgconn.Notification {
	t.Helper()
	write()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sentinel := "sentinel " + UniqueName()
	if err := notify(ctx, sentinel); err != nil {
		t.Fatalf("pgtest: sending the sentinel: %v", err)
	}
	var out []*pgconn.Notification
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("pgtest: waiting for the sentinel notification: %v", err)
		}
		if n.Payload == sentinel {
			return out
		}
		out = append(out, n)
	}
}
