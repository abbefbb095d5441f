package dbconn

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// A DSN that does not parse is refused with the driver's own reason, and
// neither the password nor the DSN appear in the message.
func TestOpenBadDSNGivesTheParsersReason(t *testing.T) {
	const secret = "s3cr3t-pw"
	tests := []struct {
		driver, dsn, reason string
	}{
		{"pgx", "postgres://u:" + secret + "@h:notaport/x", "invalid port"},
		{"pgx", "host=h port=x password=" + secret, "invalid port"},
		{"pgx", "postgres://u:" + secret + "@h/x?sslmode=bogus", "sslmode is invalid"},
		{"pgx", "host=h connect_timeout=abc password=" + secret, "invalid connect_timeout"},
		{"pgx", "password='" + secret, "unterminated quoted string"},
		{"pq", "postgres://u:" + secret + "@h:notaport/x", `invalid port ":notaport" after host`},
		{"pq", "host=h port=x password=" + secret, `wrong value for "port"`},
		{"pq", "postgres://u:" + secret + "@h/x?sslmode=bogus", `"bogus" is not supported`},
		{"pq", "password='" + secret, "unterminated quoted string"},
		{"pq", "postgres://u:" + secret + "%zz@h/x", "invalid URL escape"},
	}
	for _, tt := range tests {
		t.Run(tt.driver+" "+tt.reason, func(t *testing.T) {
			db, err := Open(context.Background(), Config{Driver: tt.driver, DSN: tt.dsn})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T, want a *ConfigError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.reason) || !strings.HasPrefix(msg, "--dsn is not a valid connection string: ") {
				t.Errorf("error %q: want the reason %q", msg, tt.reason)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, "@h") {
				t.Errorf("error %q shows the password or the DSN", msg)
			}
		})
	}
}
