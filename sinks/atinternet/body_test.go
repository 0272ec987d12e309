package atinternet_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// TestBodyNotReusedWhileWritten: a collector that answers before reading
// the body leaves the transport writing it after Send has returned; the
// body must not go back to the pool, and into the next request, until the
// write is over. The collector answers each request at its headers and
// reads no body; receive and send buffers of 4 KiB keep most of a 200 KiB
// body unsent, the transport writing it, while the next requests (on other
// connections) take bodies from the pool. The race detector is the check: it reports the transport
// reading a body the next request writes (run with -race, as always).
// Mutation caught: body holders not counting GotConn and WroteRequest
// (DATA RACE: the first body, pooled at Send's return, is rewritten by the
// next request while the transport still reads it).
func TestBodyNotReusedWhileWritten(t *testing.T) {
	const size = 60 << 10 // below the pool's bound on a body
	// A receive buffer set on the listener holds for the connections it
	// accepts from their first byte.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	serve := func(conn net.Conn) {
		defer conn.Close()
		r := bufio.NewReaderSize(conn, 4<<10)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		// The answer, before the body, which is never read: the client
		// gives up writing it (and closes the connection) 50 ms later.
		_, _ = io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n")
		<-done
	}
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(conn) })
		}
	})
	defer wg.Wait()
	defer ln.Close()
	defer close(done)
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err == nil {
			conn.(*net.TCPConn).SetWriteBuffer(4 << 10)
		}
		return conn, err
	}}
	defer tr.CloseIdleConnections()
	c := client(t, atinternet.Config{Transport: tr})
	site := &pipeline.Site{ID: 1, Endpoint: "http://" + ln.Addr().String() + "/event"}
	filled := func(fill byte) pipeline.Request {
		return pipeline.Request{Site: site, IDClient: "v", Hits: []*pipeline.Hit{{Body: bytes.Repeat([]byte{fill}, size)}}}
	}
	if st := c.Send(context.Background(), filled('a')); st.Outcome != pipeline.Delivered {
		t.Fatal(st)
	}
	// The first body may still be being written; these requests take
	// bodies from the pool.
	for range 4 {
		if st := c.Send(context.Background(), filled('b')); st.Outcome != pipeline.Delivered {
			t.Fatal(st)
		}
	}
}
