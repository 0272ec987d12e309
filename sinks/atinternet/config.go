package atinternet

import (
	"time"

	"github.com/atrelay/atrelay/internal/fielderr"
)

// HTTP is the collect client's part of the configuration's `delivery`
// section. The client's concurrency and backoff are the relay's
// (delivery.concurrency, delivery.backoff): the relay decides how many
// requests a site has in flight, and the client's connection pool follows.
type HTTP struct {
	// RequestTimeout bounds one attempt, from dial to the response's end.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// DefaultRequestTimeout is request_timeout's default (SPEC §5).
const DefaultRequestTimeout = 10 * time.Second

// Default fills the unset keys.
func (h *HTTP) Default() {
	if h.RequestTimeout == 0 {
		h.RequestTimeout = DefaultRequestTimeout
	}
}

// Validate checks the keys; paths are relative to the section.
func (h *HTTP) Validate() error {
	if h.RequestTimeout <= 0 {
		return fielderr.New("request_timeout", "must be positive")
	}
	return nil
}
