package atinternet

import (
	"net/http/httptrace"
	"sync"
	"sync/atomic"
)

// A request's body comes from a pool, with the attemptInfo its hooks read.
// The transport may read the body after Do has returned: it writes a
// request on a goroutine of its own, which may still be writing when the
// response arrives (a collector that answers before reading). So the body
// returns to the pool only when Send is done with it and every attempt
// that got a connection has been written, or has failed to be: the
// httptrace hooks GotConn and WroteRequest count them. An attempt that got
// a connection and was never written (the connection closed first) keeps
// its body out of the pool, for the garbage collector.
//
// The trace itself is each request's own, not pooled: a dial started for
// a request goes on after it (the connection then serves another) and
// reads the trace of the request that started it.
type body struct {
	buf  []byte
	info attemptInfo
	// holders is Send, until it is done, plus each attempt between GotConn
	// and WroteRequest.
	holders atomic.Int32
	// The hooks, bound once: a closure made per request would allocate.
	gotConn      func(httptrace.GotConnInfo)
	wroteRequest func(httptrace.WroteRequestInfo)
	pool         *sync.Pool
}

// maxPooledBody bounds the buffers the pool keeps (a buffer keeps the
// capacity of the largest request it held): a larger one is left to the
// garbage collector.
const maxPooledBody = writeBufferSize

func newBodyPool() *sync.Pool {
	p := &sync.Pool{}
	p.New = func() any { return newBody(p) }
	return p
}

// newBody returns a body that returns to p (never, when p is nil).
func newBody(p *sync.Pool) *body {
	b := &body{pool: p}
	b.gotConn = func(httptrace.GotConnInfo) { b.holders.Add(1) }
	b.wroteRequest = func(httptrace.WroteRequestInfo) { b.release() }
	return b
}

// getBody returns a body from the pool (a new one, never pooled, when p
// is nil), held by its caller.
func getBody(p *sync.Pool) *body {
	var b *body
	if p == nil {
		b = newBody(nil)
	} else {
		b = p.Get().(*body)
	}
	b.holders.Store(1)
	return b
}

// newTrace returns a request's trace, which holds b for each attempt
// between GotConn and WroteRequest.
func (b *body) newTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{GotConn: b.gotConn, WroteRequest: b.wroteRequest}
}

// release drops a hold; the last one returns the body to its pool.
func (b *body) release() {
	if b.holders.Add(-1) != 0 || b.pool == nil {
		return
	}
	b.info = attemptInfo{}
	if cap(b.buf) > maxPooledBody {
		b.buf = nil
	}
	b.buf = b.buf[:0]
	b.pool.Put(b)
}
