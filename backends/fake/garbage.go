package fake

import (
	"math/rand/v2"
	"strings"

	"github.com/jobwatch/jobwatch/backends/internal/notify"
)

// garbage returns the i-th malformed payload of InjectGarbage, cycling
// through the kinds of damage a channel can carry. Every result fails
// notify.Parse.
func garbage(i int) string {
	switch i % 8 {
	case 0:
		return ""
	case 1:
		return `{"type":"table_changed_event"` // truncated
	case 2:
		return `["table_changed_event"]` // not an object
	case 3:
		return `{"type":42}` // type not a string
	case 4:
		return `{"channel":"ch_pgqueuer","operation":"update"}` // no type
	case 5:
		return `{"type":"table_changed_event","table":7}` // wrong field type
	case 6:
		return strings.Repeat("x", notify.MaxPayload+1) // longer than the server allows
	default:
		// Random bytes behind a byte no JSON value starts with.
		b := make([]byte, 1+rand.IntN(64))
		b[0] = '}'
		for j := 1; j < len(b); j++ {
			b[j] = byte(rand.UintN(256))
		}
		return string(b)
	}
}
