package dbconn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
)

// dsnError is a connection string that the driver's own parser refused:
// the parser's reason, with the DSN's password masked, and never the DSN.
func dsnError(dsn string, err error) *ConfigError {
	return &ConfigError{fmt.Errorf("--dsn is not a valid connection string: %s", reason(dsn, err))}
}

// reason is why a parser refused dsn, without the connection string
// itself: pgconn's message names the DSN (with its password masked) before
// the reason, and lib/pq's URL errors quote the whole URL. Whatever remains
// is redacted again, as a parser's reason may quote any part of the DSN.
func reason(dsn string, err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	var ue *url.Error
	switch {
	case errors.As(err, &pe):
		msg = pe.Error()
		if _, after, ok := strings.Cut(msg, "`: "); ok {
			msg = after
		}
	case errors.As(err, &ue):
		msg = ue.Err.Error()
	}
	return Redactor(dsn).String(strings.TrimPrefix(msg, "pq: "))
}

// checkPqDSN parses dsn with lib/pq's own parser, as its driver will.
func checkPqDSN(dsn string) error {
	if _, err := pq.NewConfig(dsn); err != nil {
		return dsnError(dsn, err)
	}
	return nil
}
