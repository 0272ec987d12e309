// Command waitbroker waits until a Kafka broker answers a metadata request
// and its group coordinator is ready, or fails after a bounded time. The
// broker scripts use it to know when tests may start.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: waitbroker [-timeout D] host:port[,host:port]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(flag.Arg(0), ",")...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "waitbroker:", err)
		os.Exit(1)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for {
		// Listing groups needs the broker and the group coordinator up.
		if _, err := adm.ListBrokers(ctx); err == nil {
			if _, err = adm.ListGroups(ctx); err == nil {
				return
			}
			last = err
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "waitbroker: %s not ready after %s: %v\n", flag.Arg(0), *timeout, last)
			os.Exit(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
