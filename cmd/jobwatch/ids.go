package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	"github.com/jobwatch/jobwatch"
)

// maxStdinIDs bounds how many ids standard input may carry.
const maxStdinIDs = 10_000_000

// readIDs takes job ids from args, or from stdin (whitespace separated) when
// there are none or the only one is "-". Duplicates are dropped, keeping the
// first; anything that is not a positive integer is a usage error.
func readIDs(args []string, stdin io.Reader) ([]jobwatch.JobID, error) {
	words := args
	if len(args) == 0 || (len(args) == 1 && args[0] == "-") {
		var err error
		if words, err = readWords(stdin); err != nil {
			return nil, err
		}
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: no job ids (give them as arguments or on standard input)", errUsage)
	}
	seen := make(map[jobwatch.JobID]bool, len(words))
	ids := make([]jobwatch.JobID, 0, len(words))
	for _, w := range words {
		n, err := strconv.ParseInt(w, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: %q is not a job id (a positive integer)", errUsage, truncate(w))
		}
		if id := jobwatch.JobID(n); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func readWords(r io.Reader) ([]string, error) {
	if r == nil {
		return nil, nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	sc.Split(bufio.ScanWords)
	var words []string
	for sc.Scan() {
		if len(words) == maxStdinIDs {
			return nil, fmt.Errorf("%w: more than %d ids on standard input", errUsage, maxStdinIDs)
		}
		words = append(words, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: reading standard input: %v", errUsage, err)
	}
	return words, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
