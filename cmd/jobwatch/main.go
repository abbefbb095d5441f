// Command jobwatch waits for jobs in a PgQueuer-compatible PostgreSQL queue
// to reach their final status, and demonstrates the library.
//
//	jobwatch demo [--jobs N] [--workers N] [--fail-rate F]
//
// Run `jobwatch help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
)

// Exit statuses shared by every command.
const (
	exitOK        = 0
	exitUnsettled = 1 // a job settled other than successful
	exitUsage     = 2 // bad usage or input
	exitTimeout   = 3 // the timeout hit before every job settled
	exitNotFound  = 4 // a job was never found
	exitDB        = 5 // the database is unreachable, not installed, or a driver error
	exitInterrupt = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
