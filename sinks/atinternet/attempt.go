package atinternet

import (
	"context"
	"io"
	"net/http"
	"time"
)

// attemptTimeout bounds each attempt, from dial to the end of the
// response's body, in place of http.Client.Timeout. The client's timeout
// takes its cheap path (a deadline on the request's context) only when the
// client's transport is a bare *http.Transport; in front of any other — the
// traced transport, the per-host roots of tls.ca_file — it starts two
// goroutines an attempt (a timer watching the request, and the transport's
// watch of the legacy Request.Cancel it sets). This does what the cheap
// path does, whatever the transport. Each hop of a redirect is an attempt
// of its own.
type attemptTimeout struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t attemptTimeout) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(r.Context(), t.timeout)
	resp, err := t.base.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.Body == http.NoBody { // a 204's: the attempt is over
		cancel()
		return resp, nil
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// CloseIdleConnections closes the base transport's idle connections, as
// http.Client.CloseIdleConnections expects of its transport.
func (t attemptTimeout) CloseIdleConnections() { closeIdle(t.base) }

// closeIdle closes rt's idle connections when it can.
func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// cancelBody ends the attempt's context once the response's body is read
// to its end or closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.cancel()
	}
	return n, err
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
