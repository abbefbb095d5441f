// Command thirdparty is a jobwatch backend written from scratch, the way a
// third party would write one, and checked by the conformance suite every
// backend must pass. backend.go is the backend (an in-memory queue, so the
// example needs no database); backend_test.go runs the suite on it:
//
//	go test ./examples/thirdparty
//
// A real backend talks to a database, but what it must guarantee is the
// same; backend.go says where each guarantee comes from. A backend that
// also offers the producer and worker side (queue.Queue) runs
// conformance.RunQueue on it as well, as backends/fake, pgx and pq do.
package main

import "fmt"

func main() {
	fmt.Println("this example is a backend and its conformance tests: run `go test ./examples/thirdparty`")
}
